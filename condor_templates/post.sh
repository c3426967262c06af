#!/bin/sh
# POST script of every node: SCRIPT POST <node> bps_post.sh $RETURN
# - DAGMan's RETRY ... UNLESS-EXIT accepts a single value, but several exit codes mean
#   "retrying cannot help" (bps/exit_codes.py NO_RETRY): map them all to @sentinel so that
#   one UNLESS-EXIT covers them.
# - @no_work is success, for compatibility only: an older run_quantum exited @no_work when
#   a quantum found no work. Today's leaves tombstones in place of its outputs and exits 0
#   (bps/exit_codes.py), so "no work" needs no rule here.
# - Signal deaths arrive negative and become 1 (retried).
case "$1" in
@no_work) exit 0 ;;
@no_retry_cases) exit @sentinel ;;
-*) exit 1 ;;
esac
exit "$1"

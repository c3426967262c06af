#!/bin/sh
# POST script of every node: SCRIPT POST <node> bps_post.sh $RETURN
# - @no_work (the task found no work, e.g. no overlap with the patch) is an outcome, not a
#   failure: the node succeeds so that its consumers run without that input, as with
#   `supertask run` (the job leaves "no work" markers next to its manifest).
# - DAGMan's RETRY ... UNLESS-EXIT accepts a single value, but several exit codes mean
#   "retrying cannot help" (bps/exit_codes.py NO_RETRY): map them all to @sentinel so that
#   one UNLESS-EXIT covers them.
# - Signal deaths arrive negative and become 1 (retried).
case "$1" in
@no_work) exit 0 ;;
@no_retry_cases) exit @sentinel ;;
-*) exit 1 ;;
esac
exit "$1"

#!/bin/sh
# POST script of every node: SCRIPT POST <node> bps_post.sh $RETURN
# DAGMan's RETRY ... UNLESS-EXIT accepts a single value, but several exit codes mean
# "retrying cannot help" (bps/exit_codes.py NO_RETRY). Map them all to @sentinel so that
# one UNLESS-EXIT covers them; signal deaths arrive negative and become 1 (retried).
case "$1" in
@no_retry_cases) exit @sentinel ;;
-*) exit 1 ;;
esac
exit "$1"

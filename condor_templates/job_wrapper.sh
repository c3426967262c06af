#!/bin/sh
# Job wrapper of file-transfer runs:  bps_job.sh PRODUCTS EXECUTABLE [ARGUMENTS...]
# PRODUCTS: comma-separated logical file names the job may produce.
# "No work" (exit @no_work) is an outcome, not a failure. The wrapper leaves an empty
# placeholder for each product the job did not make (so that consumers' input transfer
# finds a file) and exits 0 so that HTCondor brings back what the job did make, with
# the markers the job wrote in nowork/: consumers receive them and run without those
# inputs, as with `supertask run`. Other exit codes pass through.
products="$1"
shift
mkdir -p nowork
"$@@"
rc=$?
if [ "$rc" -eq @no_work ]; then
    old_ifs=$IFS
    IFS=,
    for f in $products; do
        [ -e "$f" ] || : > "$f"
    done
    IFS=$old_ifs
    rc=0
fi
exit "$rc"

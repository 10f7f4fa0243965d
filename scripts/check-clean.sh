#!/bin/sh
# Fail if tests left containers, cgroups, or mounts behind.
set -u
bad=0
left=$(find /sys/fs/cgroup -maxdepth 3 -type d \( -name 'amber-it-*' -o -name 'amber-demo*' \) 2>/dev/null | head -5)
[ -n "$left" ] && { echo "cgroups left behind:"; echo "$left"; bad=1; }
mnt=$(grep -E 'amber-it|amber-demo' /proc/self/mountinfo | head -5)
[ -n "$mnt" ] && { echo "mounts left behind:"; echo "$mnt"; bad=1; }
procs=$(ps -eo pid,args | grep -E 'amber-it-|amber-demo' | grep -v -E 'grep|check-clean' | head -5)
[ -n "$procs" ] && { echo "processes left behind:"; echo "$procs"; bad=1; }
[ -d /run/amber ] && [ -n "$(ls -A /run/amber 2>/dev/null)" ] && { echo "state left in /run/amber:"; ls /run/amber; bad=1; }
[ "$bad" = 0 ] && echo "clean: no container, cgroup, mount or state left behind"
exit $bad

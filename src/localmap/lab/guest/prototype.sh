#!/bin/sh
# localmap prototype: /init of the busybox initramfs that checks a kernel of the prototype
# patch series (kernel/ in the repository) and, for comparison, the unpatched build.
#
# Parameters (kernel command line, handed to /init as environment variables):
#   lmstress   milliseconds of this_cpu stress per run       (default 1000)
#   lmcycles   CPU hotplug off/on cycles of every CPU but 0   (default 2)
#   lmmemcg    memory cgroups created                         (default 200)
#   lmdel      of which removed again                         (default 100)
#   lmfork     fork+exec of /bin/true                         (default 200)
#
# Output protocol (one record per line; the driver ignores everything else):
#   @@LM info KEY=VALUE ...     facts about the guest
#   @@LM phase NAME             a phase started (progress)
#   @@LM begin NAME             the content of a file follows, up to
#   @@LM end NAME
#   @@LM result NAME ok|fail DETAIL
#   @@LM done
M='@@LM'
D=/sys/kernel/debug/percpu_local
CG=/sys/fs/cgroup
lmstress=${lmstress:-1000}
lmcycles=${lmcycles:-2}
lmmemcg=${lmmemcg:-200}
lmdel=${lmdel:-100}
lmfork=${lmfork:-200}

/bin/busybox mkdir -p /proc /sys /dev /tmp /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
# keep kernel messages off the console so that they cannot split our records
echo 1 > /proc/sys/kernel/printk

section() {  # NAME FILE
	echo "$M begin $1"
	cat "$2" 2>&1
	echo "$M end $1"
}

online_cpus() { grep -c '^processor' /proc/cpuinfo; }

snapshot() {  # SUFFIX: the prototype's debugfs files, read at this point
	[ -d $D ] || return 0
	section "layout_$1" $D/layout
	section "tables_$1" $D/tables
	section "check_$1" $D/check
}

echo "$M info kernel=$(uname -r) online=$(online_cpus) possible=$(cat /sys/devices/system/cpu/possible) prototype=$([ -d $D ] && echo 1 || echo 0)"
dmesg | grep -E 'percpu|local map|CPU features|Booted secondary|SMP: Total' > /tmp/boot.txt
section boot_log /tmp/boot.txt
grep -E 'Percpu|PageTables' /proc/meminfo > /tmp/meminfo.txt
section meminfo_boot /tmp/meminfo.txt
snapshot boot

if [ -d $D ]; then
	echo "$M phase stress"
	if echo "$lmstress" > $D/stress; then
		section stress $D/stress
	else
		echo "$M result stress fail write"
	fi
fi

# CPU hotplug: every CPU but 0 off, then on again, lmcycles times; the self-check after each
echo "$M phase hotplug"
cpus=$(ls -d /sys/devices/system/cpu/cpu[0-9]* | sed 's,.*/cpu,,' | sort -n)
ok=1
n=0
while [ $n -lt "$lmcycles" ]; do
	for c in $cpus; do
		[ "$c" = 0 ] && continue
		echo 0 > /sys/devices/system/cpu/cpu$c/online || ok=0
	done
	[ "$(online_cpus)" = 1 ] || ok=0
	[ -d $D ] && section "check_off_$n" $D/check
	for c in $cpus; do
		[ "$c" = 0 ] && continue
		echo 1 > /sys/devices/system/cpu/cpu$c/online || ok=0
	done
	[ -d $D ] && section "check_on_$n" $D/check
	n=$((n + 1))
done
# CPU 0 too, where the platform lets it go (it runs on swapper_pg_dir)
if [ -f /sys/devices/system/cpu/cpu0/online ] && [ "$(online_cpus)" -gt 1 ]; then
	if echo 0 > /sys/devices/system/cpu/cpu0/online; then
		[ -d $D ] && section check_cpu0_off $D/check
		echo 1 > /sys/devices/system/cpu/cpu0/online || ok=0
		echo "$M info cpu0_hotplug=1"
	else
		echo "$M info cpu0_hotplug=refused"
	fi
fi
[ "$(online_cpus)" = "$(echo $cpus | wc -w)" ] || ok=0
echo "$M result hotplug $([ $ok = 1 ] && echo ok || echo fail) cycles=$lmcycles online=$(online_cpus)"

# the workloads of the shared captures: memory cgroups, then fork+exec
echo "$M phase memcg"
mkdir -p $CG
mount -t cgroup2 none $CG 2>/dev/null
echo "+memory" > $CG/cgroup.subtree_control 2>/dev/null
i=0
while [ $i -lt "$lmmemcg" ]; do mkdir $CG/lm$i || break; i=$((i + 1)); done
made=$i
i=0
while [ $i -lt "$lmdel" ] && [ $i -lt $made ]; do rmdir $CG/lm$i; i=$((i + 1)); done
echo "$M result memcg $([ $made = "$lmmemcg" ] && echo ok || echo fail) created=$made removed=$i"
echo "$M phase fork"
i=0
while [ $i -lt "$lmfork" ]; do /bin/true || break; i=$((i + 1)); done
echo "$M result fork $([ $i = "$lmfork" ] && echo ok || echo fail) forks=$i"
snapshot workload
[ -d $D ] && echo "$lmstress" > $D/stress && section stress_workload $D/stress

# fresh private tables: one more cycle, then the state the model is compared with
echo "$M phase final"
for c in $cpus; do [ "$c" = 0 ] || echo 0 > /sys/devices/system/cpu/cpu$c/online; done
for c in $cpus; do [ "$c" = 0 ] || echo 1 > /sys/devices/system/cpu/cpu$c/online; done
snapshot final
grep -E 'Percpu|PageTables' /proc/meminfo > /tmp/meminfo.txt
section meminfo_final /tmp/meminfo.txt
dmesg | grep -E 'BUG:|WARNING:|Oops|local map: fail|Call trace|Kernel panic' > /tmp/bad.txt
section kernel_errors /tmp/bad.txt
echo "$M done"
sync
poweroff -f

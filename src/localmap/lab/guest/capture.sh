#!/bin/sh
# localmap capture: run a percpu workload and print a bundle on stdout.
#
# One implementation for both sides: the QEMU lab runs it as /init of a busybox initramfs, and
# `localmap capture` runs it with /bin/sh on a live host (root).  It only needs POSIX sh plus
# cat, gzip, base64, dmesg, mkdir, rmdir, mount, uname and sed (busybox provides all of them).
#
# Parameters come from the environment (the kernel passes unknown name=value boot parameters to
# /init as environment variables):
#   nmemcg   memory cgroups to create            (default 0)
#   ndel     how many of them to remove again    (default 0)
#   nfork    fork+exec of /bin/true              (default 0)
#   lm_workload  a shell command to run instead of the memcg/fork phases (host only)
#   lm_config    a .config file to emit when /proc/config.gz is absent
#   lm_tracing   1 (host) to enable percpu:* events now; the lab enables them from boot
#   lm_modlist   a file of "FILE NAME" lines: insmod /lib/modules/FILE in that order after the
#                fork phase, then (when lm_modunload names an existing file) rmmod NAME in
#                reverse order; the lab puts both in the initramfs
#   lm_netup     when it names an existing file: after the insmods, set every network interface
#                up and wait 5 s (IPv6 autoconfiguration, QEMU's router advertisements)
#
# Output protocol (one record per line, nothing else is interpreted):
#   @@LOCALMAP phase NAME             a workload phase started (progress)
#   @@LOCALMAP file NAME              base64 of the gzip of file NAME follows, up to
#   @@LOCALMAP end NAME
#   @@LOCALMAP missing NAME REASON    a file that could not be collected, and why
#   @@LOCALMAP done                   everything was printed
M='@@LOCALMAP'
nmemcg=${nmemcg:-0}
ndel=${ndel:-0}
nfork=${nfork:-0}
T=/sys/kernel/tracing
CG=/sys/fs/cgroup

if [ "$$" = 1 ]; then
	lab=1
	/bin/busybox mkdir -p /proc /sys /dev /tmp /usr/bin /usr/sbin /sbin
	/bin/busybox --install -s
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	mount -t devtmpfs devtmpfs /dev 2>/dev/null
	mount -t tmpfs tmpfs /tmp
	# keep kernel messages off the console so they cannot split our records
	echo 1 > /proc/sys/kernel/printk
	# the lab puts the kernel package's .config in the initramfs
	lm_config=${lm_config:-/config}
	lm_modlist=${lm_modlist:-/lib/modules/localmap.list}
	lm_modunload=${lm_modunload:-/lib/modules/localmap.unload}
	lm_netup=${lm_netup:-/lib/modules/localmap.net}
else
	lab=0
fi

mounted_t=0
[ -d $T/events ] || { mount -t tracefs nodev $T 2>/dev/null && mounted_t=1; }
[ -d $T/events ] || { T=/sys/kernel/debug/tracing; mount -t debugfs nodev /sys/kernel/debug 2>/dev/null; }

orig_on=$(cat $T/tracing_on 2>/dev/null)
if [ "${lm_tracing:-0}" = 1 ]; then
	if [ -d $T/events/percpu ]; then
		echo 0 > $T/tracing_on
		[ -n "${lm_buf_kb:-}" ] && echo "$lm_buf_kb" > $T/buffer_size_kb
		echo > $T/trace
		echo 1 > $T/events/percpu/enable
		echo 1 > $T/tracing_on
	fi
fi

if ! grep -q cgroup2 /proc/mounts; then
	mkdir -p $CG
	mount -t cgroup2 none $CG 2>/dev/null
fi
# the memory controller: on cgroup2 when it offers it, else a cgroup v1 memory hierarchy
CG=$(sed -n 's/^[^ ]* \([^ ]*\) cgroup2 .*/\1/p' /proc/mounts | sed -n 1p)
if [ -n "$CG" ] && grep -qw memory "$CG/cgroup.controllers" 2>/dev/null; then
	echo +memory > "$CG/cgroup.subtree_control" 2>/dev/null
else
	V1=$(sed -n 's/^[^ ]* \([^ ]*\) cgroup [^ ]*memory.*/\1/p' /proc/mounts | sed -n 1p)
	if [ -n "$V1" ]; then CG=$V1; else echo "$M missing memcg no memory cgroup controller"; fi
fi
if [ $lab = 1 ]; then W=$CG; else W="$CG/localmap.$$"; fi

phase() { echo "$M phase $1"; }
meminfo() { cat /proc/meminfo > /tmp/localmap.$$.meminfo.$1; }

mkdir -p /tmp
meminfo boot
if [ -n "${lm_workload:-}" ]; then
	phase workload
	sh -c "$lm_workload" > /dev/null 2>&1 < /dev/null
	meminfo workload
else
	phase memcg
	if [ $lab = 0 ]; then
		mkdir -p "$W"
		echo +memory > "$W/cgroup.subtree_control" 2>/dev/null
	fi
	i=0
	while [ $i -lt "$nmemcg" ]; do mkdir "$W/m$i"; i=$((i + 1)); done
	meminfo memcg
	phase memcg_del
	i=0
	while [ $i -lt "$ndel" ]; do rmdir "$W/m$i"; i=$((i + 1)); done
	meminfo memcg_del
	phase fork
	i=0
	while [ $i -lt "$nfork" ]; do /bin/true; i=$((i + 1)); done
	meminfo fork
	if [ -n "${lm_modlist:-}" ] && [ -r "$lm_modlist" ]; then
		# static per-CPU data of modules lives in the first chunk's reserved region
		phase modules
		while read -r f n; do
			[ -n "$n" ] || continue
			if insmod "/lib/modules/$f" > /dev/null 2>&1; then
				echo "$n loaded"
			else
				echo "$n failed"
			fi
		done < "$lm_modlist" > /tmp/localmap.$$.modules
		if [ -n "${lm_netup:-}" ] && [ -e "$lm_netup" ]; then
			for d in /sys/class/net/*; do
				ip link set "${d##*/}" up > /dev/null 2>&1 && echo "${d##*/} up"
			done >> /tmp/localmap.$$.modules
			sleep 5
		fi
		meminfo modules
		if [ -n "${lm_modunload:-}" ] && [ -e "$lm_modunload" ]; then
			phase modules_del
			rev=
			for n in $(sed -n 's/ loaded$//p' /tmp/localmap.$$.modules); do rev="$n $rev"; done
			for n in $rev; do
				if rmmod "$n" > /dev/null 2>&1; then echo "$n unloaded"; else echo "$n busy"; fi
			done >> /tmp/localmap.$$.modules
			meminfo modules_del
		fi
	fi
fi
# stop recording so that the trace shows the workload, not the collection below
echo 0 > $T/tracing_on 2>/dev/null
phase collect

emit() { # NAME FILE
	if [ -r "$2" ]; then
		echo "$M file $1"
		gzip -c < "$2" | base64
		echo "$M end $1"
	else
		echo "$M missing $1 cannot read $2"
	fi
}
emitcmd() { # NAME CMD...
	n=$1; shift
	echo "$M file $n"
	"$@" 2>/dev/null | gzip -c | base64
	echo "$M end $n"
}

emit trace $T/trace
emit event_format $T/events/percpu/percpu_alloc_percpu/format
emitcmd dmesg dmesg
for p in boot memcg memcg_del fork modules modules_del workload; do
	[ -f /tmp/localmap.$$.meminfo.$p ] && emit meminfo.$p /tmp/localmap.$$.meminfo.$p
done
emit vmallocinfo /proc/vmallocinfo
emit kallsyms /proc/kallsyms
if [ -r /proc/config.gz ]; then
	echo "$M file config"; gzip -dc /proc/config.gz | gzip -c | base64; echo "$M end config"
elif [ -n "${lm_config:-}" ] && [ -r "$lm_config" ]; then
	emit config "$lm_config"
else
	emit config "/boot/config-$(uname -r)"
fi
[ -f /tmp/localmap.$$.modules ] && emit modules /tmp/localmap.$$.modules
{
	echo "possible $(cat /sys/devices/system/cpu/possible)"
	echo "online $(cat /sys/devices/system/cpu/online)"
} > /tmp/localmap.$$.cpus
emit cpus /tmp/localmap.$$.cpus
emitcmd uname uname -a
emit cmdline /proc/cmdline
rm -f /tmp/localmap.$$.*

if [ $lab = 0 ]; then  # leave the host as we found it
	i=0
	while [ $i -lt "$nmemcg" ]; do rmdir "$W/m$i" 2>/dev/null; i=$((i + 1)); done
	rmdir "$W" 2>/dev/null
	[ "${lm_tracing:-0}" = 1 ] && echo 0 > $T/events/percpu/enable
	echo "${orig_on:-1}" > $T/tracing_on 2>/dev/null
	[ $mounted_t = 1 ] && umount $T 2>/dev/null
fi
echo "$M done"
if [ $lab = 1 ]; then
	sync
	poweroff -f
	sleep 5
fi
exit 0

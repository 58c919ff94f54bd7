#!/bin/bash
# How the byte vectors in frr_vectors.rs were obtained: two FRR 8.4 bfdd instances (Debian
# frr 8.4.4) in two namespaces joined by a veth, tcpdump on one end. Run as root, by hand, under
# the machine-wide lab lock: flock /run/herald-outer.lock bfd/tests/frr_capture.sh
# It prints nothing useful itself; read /tmp/hd-bfd-cap/bfd.pcap (tcpdump -r ... -x).
# Captures BFD control packets exchanged by two FRR bfdd instances in two namespaces.
set -u
OUT=/tmp/hd-bfd-cap
rm -rf $OUT; mkdir -p $OUT
cleanup() {
  for n in hdbfd-a hdbfd-b; do
    for p in $(cat /var/run/frr/$n/*.pid 2>/dev/null); do kill $p 2>/dev/null; done
  done
  sleep 1
  ip netns del hdbfd-a 2>/dev/null; ip netns del hdbfd-b 2>/dev/null
  rm -rf /etc/frr/hdbfd-a /etc/frr/hdbfd-b /var/run/frr/hdbfd-a /var/run/frr/hdbfd-b
}
trap cleanup EXIT
cleanup
ip netns add hdbfd-a; ip netns add hdbfd-b
ip link add hdbfdA type veth peer name hdbfdB
ip link set hdbfdA netns hdbfd-a; ip link set hdbfdB netns hdbfd-b
for x in a:A:201 b:B:202; do
  IFS=: read n l a <<<"$x"
  ip netns exec hdbfd-$n sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  ip netns exec hdbfd-$n sysctl -qw net.ipv6.conf.hdbfd$l.accept_dad=0
  ip -n hdbfd-$n link set lo up
  ip -n hdbfd-$n addr add 192.0.2.$a/24 dev hdbfd$l
  ip -n hdbfd-$n addr add 2001:db8:1::$a/64 dev hdbfd$l nodad
  ip -n hdbfd-$n link set hdbfd$l up
done
conf() { # name self peer
cat <<C
frr defaults traditional
hostname $1
log file $OUT/$1.log
!
bfd
 peer 192.0.2.$3 local-address 192.0.2.$2
  receive-interval 300
  transmit-interval 300
  detect-multiplier 3
 !
 peer 2001:db8:1::$3 local-address 2001:db8:1::$2
  receive-interval 300
  transmit-interval 300
  detect-multiplier 3
 !
!
C
}
for x in a:201:202 b:202:201; do
  IFS=: read n s p <<<"$x"
  mkdir -p /etc/frr/hdbfd-$n /var/run/frr/hdbfd-$n
  conf $n $s $p > /etc/frr/hdbfd-$n/frr.conf
  echo "service integrated-vtysh-config" > /etc/frr/hdbfd-$n/vtysh.conf
  printf 'zebra=yes\nbfdd=yes\n' > /etc/frr/hdbfd-$n/daemons
  chown -R frr:frr /etc/frr/hdbfd-$n /var/run/frr/hdbfd-$n $OUT
done
ip netns exec hdbfd-b timeout 40 tcpdump -i hdbfdB -U -w $OUT/bfd.pcap 'udp port 3784' 2>$OUT/tcpdump.err &
TD=$!
sleep 1
# b starts first alone: its Down packets (your discriminator 0) are captured before a exists.
for n in b a; do
  for d in zebra bfdd; do
    ip netns exec hdbfd-$n /usr/lib/frr/$d -d -N hdbfd-$n -F traditional -A 127.0.0.1
  done
  sleep 1
  vtysh -N hdbfd-$n -b >/dev/null
  [ $n = b ] && sleep 3
done
sleep 6
vtysh -N hdbfd-a -c 'show bfd peers' > $OUT/peers-a.txt
# Profile change on a: a Poll sequence.
vtysh -N hdbfd-a -c 'configure terminal' -c 'bfd' -c 'peer 192.0.2.202 local-address 192.0.2.201' -c 'transmit-interval 200' -c 'receive-interval 200' >/dev/null
sleep 3
# Admin shutdown on a: AdminDown packets.
vtysh -N hdbfd-a -c 'configure terminal' -c 'bfd' -c 'peer 192.0.2.202 local-address 192.0.2.201' -c 'shutdown' >/dev/null
sleep 2
vtysh -N hdbfd-b -c 'show bfd peers' > $OUT/peers-b.txt
kill $TD; wait $TD 2>/dev/null
ip netns exec hdbfd-b tcpdump -r $OUT/bfd.pcap -nn -v -x > $OUT/bfd.txt 2>&1
echo done

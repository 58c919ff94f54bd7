#!/bin/sh
# Node i of the containerlab lab: the same addresses and routes as the namespace lab.
set -eu
i=$1
ip route del default 2>/dev/null || true
sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
  net.ipv6.conf.all.accept_dad=0 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
ip addr add 192.0.2.1$i/24 dev lan0
ip -6 addr add 2001:db8:1::1$i/64 dev lan0 nodad
ip addr add 169.254.100.1$i/24 dev cp0
ip link add pods0 type bridge stp_state 0
ip addr add 198.18.$i.1/24 dev pods0
ip -6 addr add 2001:db8:244:$i::1/64 dev pods0 nodad
ip link set p1 master pods0
for dev in lan0 cp0 pods0 p1; do ip link set "$dev" up; done
ip route add 198.51.100.0/24 via 192.0.2.1
ip -6 route add 2001:db8:2::/64 via 2001:db8:1::1
for k in 1 2 3; do
  [ "$k" = "$i" ] && continue
  ip route add 198.18.$k.0/24 via 192.0.2.1$k
  ip -6 route add 2001:db8:244:$k::/64 via 2001:db8:1::1$k
done

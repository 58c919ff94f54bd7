#!/bin/sh
# Pod j on node i of the containerlab lab: addresses, routes via the node, echo server.
set -eu
i=$1
j=$2
ip route del default 2>/dev/null || true
sysctl -qw net.ipv6.conf.all.accept_dad=0
ip addr add 198.18.$i.1$j/24 dev eth1
ip -6 addr add 2001:db8:244:$i::1$j/64 dev eth1 nodad
ip route add default via 198.18.$i.1
ip -6 route add default via 2001:db8:244:$i::1
nohup herald-lab echo --pod echo-$i-$j --node node$i --port 8080 >/var/log/echo.log 2>&1 &

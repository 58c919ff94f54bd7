#!/usr/bin/env bash
# Re-creates the captured ARP/NDP vectors in this directory from the Linux kernel and
# iputils/ndisc6 tools, between two network namespaces made here (documentation ranges only,
# no route out). Needs root, iproute2, tcpdump, iputils-ping, iputils-arping, ndisc6.
#
#   hl2cap-a (veth a0, 02:00:5e:10:00:0a, 192.0.2.10/24, 2001:db8:1::10/64)
#   hl2cap-b (veth b0, 02:00:5e:10:00:0b, 192.0.2.11/24, 2001:db8:1::11/64)
#
# Output: one pcap per scenario (captured on b0 in hl2cap-b, so frames from both sides).
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)"
A=hl2cap-a B=hl2cap-b
cleanup() {
  for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip netns add "$A"; ip netns add "$B"
ip link add a0 netns "$A" address 02:00:5e:10:00:0a type veth peer name b0 netns "$B" address 02:00:5e:10:00:0b
for ns in "$A" "$B"; do
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=1
done
ip netns exec "$B" sysctl -qw net.ipv6.neigh.b0.delay_first_probe_time=1
ip -n "$A" link set a0 up; ip -n "$B" link set b0 up
ip -n "$A" addr add 192.0.2.10/24 dev a0
ip -n "$B" addr add 192.0.2.11/24 dev b0
ip -n "$B" -6 addr add 2001:db8:1::11/64 dev b0 nodad
sleep 1

capture() { # name, filter, command...
  local name="$1" filter="$2"; shift 2
  ip netns exec "$B" tcpdump -q -i b0 -U -w "$out/$name.pcap" "$filter" 2>/dev/null &
  local pid=$!
  sleep 1
  "$@" || true
  sleep 1
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

# Kernel address resolution: B asks for A's IPv4 address, A's kernel replies.
capture arp_kernel_request_reply arp ip netns exec "$B" ping -c1 -W1 192.0.2.10
# Gratuitous ARP, request form (arping -U) and reply form (arping -A), from A.
capture arp_gratuitous_request arp ip netns exec "$A" arping -U -c1 -I a0 192.0.2.10
capture arp_gratuitous_reply arp ip netns exec "$A" arping -A -c1 -I a0 192.0.2.10
# RFC 5227 probe (duplicate address detection, sender IP 0.0.0.0) from B; A defends.
capture arp_probe_answered arp ip netns exec "$B" arping -D -c1 -w1 -I b0 192.0.2.10
# IPv6 DAD: the kernel probes a new address on A (NS from ::, to the solicited-node group).
capture ndp_dad_probe icmp6 bash -c "ip -n $A -6 addr add 2001:db8:1::10/64 dev a0; sleep 3"
# Address resolution: multicast NS from B, solicited NA (S and O set) from A.
capture ndp_resolution icmp6 ip netns exec "$B" ping -6 -c1 -W1 2001:db8:1::10
# Unicast NUD probe: make B's entry stale, use it, the kernel probes unicast after the delay.
ip -n "$B" -6 neigh change 2001:db8:1::10 dev b0 nud stale
capture ndp_unicast_nud_probe icmp6 bash -c "ip netns exec $B ping -6 -c1 -W1 2001:db8:1::10; sleep 3"
# Unsolicited NA with Override: ndisc_notify makes A's kernel announce on a MAC change.
ip netns exec "$A" sysctl -qw net.ipv6.conf.a0.ndisc_notify=1
capture ndp_unsolicited_advertisement icmp6 ip -n "$A" link set a0 address 02:00:5e:10:00:1a
# ndisc6 (userspace NS) from B for A's address.
capture ndp_ndisc6_solicitation icmp6 ip netns exec "$B" ndisc6 -1 -r1 2001:db8:1::10 b0
ls -l "$out"/*.pcap

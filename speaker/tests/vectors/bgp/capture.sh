#!/usr/bin/env bash
# Captures real BGP messages exchanged by FRR (bgpd) and GoBGP (gobgpd) between two network
# namespaces this script creates, and writes each message as a .bin file next to this script.
#
# Needs root, frr, gobgpd, tcpdump, python3. Addresses: documentation ranges only
# (192.0.2.0/24 and 2001:db8:1::/64 on the link, 203.0.113.0/24 and 2001:db8:100::/120 as routes).
# Everything it creates is removed on exit, even on failure. Run: sudo bash capture.sh
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d /tmp/herald-bgp-vectors.XXXXXX)"
NS_FRR=hvc-frr
NS_GOBGP=hvc-gobgp
FRR_NAME=hvcfrr
PIDS=()

cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  [ -f "/var/run/frr/$FRR_NAME/bgpd.pid" ] && kill "$(cat /var/run/frr/$FRR_NAME/bgpd.pid)" 2>/dev/null
  [ -f "/var/run/frr/$FRR_NAME/zebra.pid" ] && kill "$(cat /var/run/frr/$FRR_NAME/zebra.pid)" 2>/dev/null
  sleep 0.5
  ip netns del "$NS_FRR" 2>/dev/null
  ip netns del "$NS_GOBGP" 2>/dev/null
  rm -rf "/etc/frr/$FRR_NAME" "/var/run/frr/$FRR_NAME" "$WORK"
}
trap cleanup EXIT

ip netns add "$NS_FRR"
ip netns add "$NS_GOBGP"
ip link add hvc-a netns "$NS_FRR" type veth peer name hvc-b netns "$NS_GOBGP"
ip -n "$NS_FRR" addr add 192.0.2.1/24 dev hvc-a
ip -n "$NS_FRR" addr add 2001:db8:1::1/64 dev hvc-a nodad
ip -n "$NS_GOBGP" addr add 192.0.2.2/24 dev hvc-b
ip -n "$NS_GOBGP" addr add 2001:db8:1::2/64 dev hvc-b nodad
for ns in "$NS_FRR" "$NS_GOBGP"; do ip -n "$ns" link set lo up; done
ip -n "$NS_FRR" link set hvc-a up
ip -n "$NS_GOBGP" link set hvc-b up

# FRR: AS 64500, announces an IPv4 /32 with standard and large communities and an IPv6 /128.
mkdir -p "/etc/frr/$FRR_NAME" "/var/run/frr/$FRR_NAME"
cat > "/etc/frr/$FRR_NAME/frr.conf" <<CONF
frr defaults traditional
hostname hvcfrr
ip route 203.0.113.10/32 blackhole
ipv6 route 2001:db8:100::10/128 blackhole
route-map TAG permit 10
 set community 64500:100 64500:200
 set large-community 64500:1:2
router bgp 64500
 bgp router-id 192.0.2.1
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 bgp graceful-restart
 no bgp network import-check
 neighbor 192.0.2.2 remote-as 64501
 neighbor 192.0.2.2 timers 3 9
 address-family ipv4 unicast
  neighbor 192.0.2.2 activate
  neighbor 192.0.2.2 route-map TAG out
  network 203.0.113.10/32
 exit-address-family
 address-family ipv6 unicast
  neighbor 192.0.2.2 activate
  network 2001:db8:100::10/128
 exit-address-family
CONF
printf 'zebra=yes\nbgpd=yes\n' > "/etc/frr/$FRR_NAME/daemons"
: > "/etc/frr/$FRR_NAME/vtysh.conf"
chown -R frr:frr "/etc/frr/$FRR_NAME" "/var/run/frr/$FRR_NAME"

ip netns exec "$NS_FRR" tcpdump -i hvc-a -U -s 0 -w "$WORK/bgp.pcap" 'tcp port 179' >/dev/null 2>&1 &
PIDS+=($!)
sleep 1

ip netns exec "$NS_FRR" /usr/lib/frr/zebra -d -N "$FRR_NAME" -F traditional -A 127.0.0.1 \
  -i "/var/run/frr/$FRR_NAME/zebra.pid"
ip netns exec "$NS_FRR" /usr/lib/frr/bgpd -d -N "$FRR_NAME" -F traditional -A 127.0.0.1 \
  -i "/var/run/frr/$FRR_NAME/bgpd.pid"
sleep 1
ip netns exec "$NS_FRR" vtysh -N "$FRR_NAME" -b >/dev/null

# GoBGP: AS 64501, 4-octet ASN capable, announces an IPv4 /32 and an IPv6 /128.
cat > "$WORK/gobgpd.toml" <<CONF
[global.config]
  as = 64501
  router-id = "192.0.2.2"
  port = 179
  local-address-list = ["192.0.2.2"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.0.2.1"
    peer-as = 64500
  [neighbors.timers.config]
    hold-time = 9
    keepalive-interval = 3
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
CONF
ip netns exec "$NS_GOBGP" gobgpd -f "$WORK/gobgpd.toml" --api-hosts 127.0.0.1:50051 \
  >"$WORK/gobgpd.log" 2>&1 &
PIDS+=($!)
GOBGP=(ip netns exec "$NS_GOBGP" gobgp -u 127.0.0.1 -p 50051)

for _ in $(seq 1 60); do
  if "${GOBGP[@]}" neighbor 2>/dev/null | grep -q Establ; then break; fi
  sleep 1
done
"${GOBGP[@]}" neighbor | grep -q Establ || { echo "session did not establish" >&2; "${GOBGP[@]}" neighbor >&2; cat "$WORK/gobgpd.log" >&2; exit 1; }

"${GOBGP[@]}" global rib add 203.0.113.20/32 community 64501:300 large-community 64501:3:4
"${GOBGP[@]}" global rib -a ipv6 add 2001:db8:100::20/128 nexthop 2001:db8:1::2
sleep 4
"${GOBGP[@]}" global rib del 203.0.113.20/32
"${GOBGP[@]}" global rib -a ipv6 del 2001:db8:100::20/128
sleep 4
# A shutdown with a communication (RFC 8203) from GoBGP.
"${GOBGP[@]}" neighbor 192.0.2.1 shutdown --reason "herald vector capture" || true
sleep 2
kill "${PIDS[0]}"; sleep 1

python3 "$HERE/extract.py" "$WORK/bgp.pcap" "$HERE"

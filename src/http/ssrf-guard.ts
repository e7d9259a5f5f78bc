/**
 * Which IP addresses an outbound request may connect to.
 *
 * Administrators configure the URLs we call (webhooks, SAML metadata, back-channel logout), so a URL
 * is attacker-controlled input as far as the network is concerned: without a guard it could reach the
 * loopback interface, the private network the server runs in, or a cloud metadata service. This module
 * answers one question for one address: "is it in a range we refuse, and which one?"
 *
 * The ranges follow the IANA special-purpose address registries (IPv4 and IPv6): everything that is
 * not globally reachable, plus the cloud metadata endpoints by name. IPv6 forms that carry an IPv4
 * address (IPv4-mapped, IPv4-compatible, NAT64, 6to4) are judged by the IPv4 address they carry, so
 * `::ffff:127.0.0.1` is refused as loopback and `2002:5db8:d70e::` is judged as 93.184.215.14.
 * Matching uses node's `net.BlockList`; the only bit work here is reading the IPv4 address out of an
 * IPv6 one.
 */
import { BlockList, isIP, isIPv4 } from 'node:net';

type Family = 'ipv4' | 'ipv6';

interface Range {
  readonly cidr: string;
  readonly label: string;
  readonly list: BlockList;
}

function range(family: Family, cidr: string, label: string): Range {
  const [network, prefix] = cidr.split('/') as [string, string];
  const list = new BlockList();
  list.addSubnet(network, Number(prefix), family);
  return { cidr, label, list };
}

// Order matters only for naming: the first (most specific) match names the refusal.
const IPV4_RANGES: readonly Range[] = [
  range('ipv4', '169.254.169.254/32', 'cloud metadata service'),
  range('ipv4', '168.63.129.16/32', 'cloud metadata service (Azure platform address)'),
  range('ipv4', '0.0.0.0/32', 'unspecified address'),
  range('ipv4', '0.0.0.0/8', '"this network"'),
  range('ipv4', '10.0.0.0/8', 'private network'),
  range('ipv4', '100.64.0.0/10', 'carrier-grade NAT (shared address space)'),
  range('ipv4', '127.0.0.0/8', 'loopback'),
  range('ipv4', '169.254.0.0/16', 'link-local'),
  range('ipv4', '172.16.0.0/12', 'private network'),
  range('ipv4', '192.0.0.0/24', 'IETF protocol assignments'),
  range('ipv4', '192.0.2.0/24', 'documentation (TEST-NET-1)'),
  range('ipv4', '192.88.99.0/24', '6to4 relay anycast'),
  range('ipv4', '192.168.0.0/16', 'private network'),
  range('ipv4', '198.18.0.0/15', 'benchmarking'),
  range('ipv4', '198.51.100.0/24', 'documentation (TEST-NET-2)'),
  range('ipv4', '203.0.113.0/24', 'documentation (TEST-NET-3)'),
  range('ipv4', '224.0.0.0/4', 'multicast'),
  range('ipv4', '255.255.255.255/32', 'broadcast'),
  range('ipv4', '240.0.0.0/4', 'reserved'),
];

/** IPv6 prefixes whose addresses carry an IPv4 address, and where it sits (16-bit group index). */
const EMBEDDING: readonly { range: Range; firstGroup: number }[] = [
  { range: range('ipv6', '::ffff:0:0/96', 'IPv4-mapped'), firstGroup: 6 },
  { range: range('ipv6', '64:ff9b::/96', 'NAT64'), firstGroup: 6 },
  { range: range('ipv6', '2002::/16', '6to4'), firstGroup: 1 },
];

const IPV6_RANGES: readonly Range[] = [
  range('ipv6', '::/128', 'unspecified address'),
  range('ipv6', '::1/128', 'loopback'),
  range('ipv6', 'fd00:ec2::254/128', 'cloud metadata service'),
  range('ipv6', '64:ff9b:1::/48', 'NAT64 (local use)'),
  range('ipv6', '100::/64', 'discard-only'),
  range('ipv6', '2001::/32', 'Teredo tunnel'),
  range('ipv6', '2001:2::/48', 'benchmarking'),
  range('ipv6', '2001:10::/28', 'ORCHID'),
  range('ipv6', '2001:20::/28', 'ORCHIDv2'),
  range('ipv6', '2001:db8::/32', 'documentation'),
  range('ipv6', '2001::/23', 'IETF protocol assignments'),
  range('ipv6', '3fff::/20', 'documentation'),
  range('ipv6', '5f00::/16', 'segment routing (SRv6)'),
  range('ipv6', 'fc00::/7', 'unique-local'),
  range('ipv6', 'fe80::/10', 'link-local'),
  range('ipv6', 'fec0::/10', 'site-local (deprecated)'),
  range('ipv6', 'ff00::/8', 'multicast'),
];

// Checked after the specific ones above (so `::` and `::1` keep their own names).
const IPV4_COMPATIBLE = { range: range('ipv6', '::/96', 'IPv4-compatible'), firstGroup: 6 };

/** Why an address is refused: the address, the range it fell in and that range's name. */
export interface BlockedAddress {
  readonly address: string;
  readonly range: string;
  readonly label: string;
}

/**
 * The refused range an address falls in, or `null` when it may be connected to. `address` is an IP
 * literal (IPv6 without brackets; a `%zone` suffix is ignored); anything else counts as refused,
 * since an address we cannot read is not one we can vouch for.
 */
export function classifyAddress(address: string): BlockedAddress | null {
  const bare = address.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  const version = isIP(bare);
  if (version === 4) return classifyV4(bare, bare);
  if (version === 6) return classifyV6(bare);
  return { address, range: 'n/a', label: 'not an IP address' };
}

function classifyV4(v4: string, original: string, via?: string): BlockedAddress | null {
  for (const r of IPV4_RANGES) {
    if (r.list.check(v4, 'ipv4')) {
      return {
        address: original,
        range: via ? `${via} of ${r.cidr}` : r.cidr,
        label: via ? `${r.label}, ${via.split(' ')[0]!}` : r.label,
      };
    }
  }
  return null;
}

function classifyV6(v6: string): BlockedAddress | null {
  for (const r of IPV6_RANGES.slice(0, 2)) {
    if (r.list.check(v6, 'ipv6')) return { address: v6, range: r.cidr, label: r.label };
  }
  for (const e of [...EMBEDDING, IPV4_COMPATIBLE]) {
    if (e.range.list.check(v6, 'ipv6')) {
      const v4 = embeddedIPv4(v6, e.firstGroup);
      return classifyV4(v4, v6, `${e.range.label} (${e.range.cidr}) form`);
    }
  }
  for (const r of IPV6_RANGES.slice(2)) {
    if (r.list.check(v6, 'ipv6')) return { address: v6, range: r.cidr, label: r.label };
  }
  return null;
}

/** The IPv4 address held in 16-bit groups `first` and `first + 1` of an IPv6 address. */
function embeddedIPv4(v6: string, first: number): string {
  const groups = expandIPv6(v6);
  const hi = groups[first]!;
  const lo = groups[first + 1]!;
  return [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff].join('.');
}

/** The eight 16-bit groups of a valid IPv6 literal (with `::` and a trailing dotted quad allowed). */
function expandIPv6(v6: string): number[] {
  let text = v6.toLowerCase();
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (isIPv4(tail)) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const left = head === '' ? [] : head.split(':');
  const right = rest === undefined || rest === '' ? [] : rest.split(':');
  const missing = 8 - left.length - right.length;
  const all = rest === undefined ? left : [...left, ...Array<string>(missing).fill('0'), ...right];
  return all.map((g) => parseInt(g, 16));
}

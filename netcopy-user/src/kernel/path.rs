//! The network path a sender's data takes, as the kernel describes it: the device that
//! carries a connection, whether it can take pages by reference (scatter-gather), what
//! driver it is, whether the peer is on this host, and which packet sockets tap it. These
//! are the facts that decide whether MSG_ZEROCOPY avoids the copy (shared/PLATFORM.md,
//! "MSG_ZEROCOPY here"): no scatter-gather means a copy at send, a local receiver a copy
//! on delivery, a packet tap a copy for the tap.
//!
//! Read with ioctls, getifaddrs and /proc only, so that it works in a minimal guest with
//! no iproute2 or ethtool.

use std::{
    collections::BTreeMap,
    ffi::CStr,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde::{Deserialize, Serialize};

/// `ETH_P_ALL` as /proc/net/packet prints it (host order, hex).
const ETH_P_ALL: u16 = 0x0003;
const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
const ETHTOOL_GSG: u32 = 0x0000_0018;

/// One network device as the path sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    pub ifindex: u32,
    /// The driver's name (`veth`, `virtio_net`, `tun`, ...); None when the device has no
    /// ethtool driver information (loopback).
    pub driver: Option<String>,
    /// Scatter-gather: the device takes frags by page reference. Without it every
    /// MSG_ZEROCOPY send is copied at once. None when the kernel would not say.
    pub scatter_gather: Option<bool>,
    pub loopback: bool,
}

/// A packet socket open on this host (this network namespace), with its owner when found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketSocket {
    /// The device it is bound to; 0: every device.
    pub ifindex: u32,
    /// The protocol it receives, e.g. 0x0003 (ETH_P_ALL: every frame, outgoing included).
    pub protocol: u16,
    pub inode: u64,
    /// Processes holding it, as "pid (comm)".
    pub owners: Vec<String>,
}

impl PacketSocket {
    /// It sees this device's outgoing frames: ETH_P_ALL on the device or on all devices.
    /// Such a tap makes the kernel copy zero-copy pages for it (deliver_skb).
    pub fn taps_outgoing(&self, ifindex: u32) -> bool {
        self.protocol == ETH_P_ALL && (self.ifindex == 0 || self.ifindex == ifindex)
    }
}

/// The path of one connection, from the sender's side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathFacts {
    pub local: IpAddr,
    pub peer: IpAddr,
    /// The device holding the local address (the one the connection leaves by).
    pub device: Option<Device>,
    /// The peer's address is one of this host's (this namespace's): delivered locally.
    pub peer_is_local: bool,
    /// Packet sockets that tap the device's outgoing frames.
    pub taps: Vec<PacketSocket>,
}

impl PathFacts {
    /// Reads the facts for a connection from `local` to `peer`, in the calling thread's
    /// network namespace.
    pub fn read(local: IpAddr, peer: IpAddr) -> PathFacts {
        let addrs = interface_addresses();
        let device_name = addrs
            .iter()
            .find(|(_, a)| *a == local)
            .map(|(name, _)| name.clone());
        let device = device_name.map(|name| describe_device(&name));
        let peer_is_local = peer.is_loopback() || addrs.iter().any(|(_, a)| *a == peer);
        let taps = match &device {
            Some(d) => packet_sockets()
                .into_iter()
                .filter(|s| s.taps_outgoing(d.ifindex))
                .collect(),
            None => Vec::new(),
        };
        PathFacts {
            local,
            peer,
            device,
            peer_is_local,
            taps,
        }
    }
}

/// Every (interface, address) pair of this namespace.
fn interface_addresses() -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr points to a sockaddr whose family says its real type.
        let addr = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                        sin.sin_addr.s_addr,
                    ))))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
                }
                _ => None,
            }
        };
        if let Some(addr) = addr {
            out.push((name, addr));
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// The ethtool facts of one device.
pub fn describe_device(name: &str) -> Device {
    let ifindex = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/flags"))
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    Device {
        name: name.to_string(),
        ifindex,
        driver: ethtool_driver(name),
        scatter_gather: ethtool_value(name, ETHTOOL_GSG).map(|v| v != 0),
        loopback: flags & libc::IFF_LOOPBACK as u32 != 0,
    }
}

#[repr(C)]
struct Ifreq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool(name: &str, data: *mut libc::c_void) -> bool {
    if name.len() >= libc::IFNAMSIZ {
        return false;
    }
    let mut req = Ifreq {
        name: [0; libc::IFNAMSIZ],
        data,
        _pad: [0; 16],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: a datagram socket only to carry the ioctl; closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: SIOCETHTOOL reads `req` and the command structure `data` points to, both
    // alive for the call.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut req) };
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    rc == 0
}

fn ethtool_value(name: &str, cmd: u32) -> Option<u32> {
    let mut value = [cmd, 0u32];
    ethtool(name, value.as_mut_ptr().cast()).then_some(value[1])
}

fn ethtool_driver(name: &str) -> Option<String> {
    // struct ethtool_drvinfo: cmd, then driver[32], version[32], ... 196 bytes in all.
    let mut info = [0u8; 196];
    info[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
    if !ethtool(name, info.as_mut_ptr().cast()) {
        return None;
    }
    let driver = &info[4..36];
    let end = driver.iter().position(|&b| b == 0).unwrap_or(driver.len());
    let text = String::from_utf8_lossy(&driver[..end]).into_owned();
    (!text.is_empty()).then_some(text)
}

/// An ETH_P_ALL packet socket bound to one device, held open and never read: what a
/// running tcpdump does to that device's zero-copy sends, made on purpose (verify
/// `--packet-tap`) to show its cost. Closed on drop.
pub struct PacketTap {
    fd: std::os::fd::OwnedFd,
}

impl PacketTap {
    pub fn open(ifindex: u32) -> std::io::Result<PacketTap> {
        use std::os::fd::FromRawFd;
        let proto = ETH_P_ALL.to_be();
        // SAFETY: a plain socket call; the descriptor is owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: binds our socket to an address of the right type and length.
        let rc = unsafe {
            libc::bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(PacketTap { fd })
    }
}

impl std::fmt::Debug for PacketTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PacketTap({:?})", self.fd)
    }
}

/// The packet sockets of /proc/net/packet, with their owning processes.
pub fn packet_sockets() -> Vec<PacketSocket> {
    let Ok(text) = std::fs::read_to_string("/proc/net/packet") else {
        return Vec::new();
    };
    let mut sockets = parse_proc_net_packet(&text);
    if !sockets.is_empty() {
        let owners = socket_owners();
        for s in &mut sockets {
            s.owners = owners.get(&s.inode).cloned().unwrap_or_default();
        }
    }
    sockets
}

/// `sk RefCnt Type Proto Iface R Rmem User Inode` lines; Proto is hex.
fn parse_proc_net_packet(text: &str) -> Vec<PacketSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 {
                return None;
            }
            Some(PacketSocket {
                protocol: u16::from_str_radix(f[3], 16).ok()?,
                ifindex: f[4].parse().ok()?,
                inode: f[8].parse().ok()?,
                owners: Vec::new(),
            })
        })
        .collect()
}

/// Socket inode -> "pid (comm)" of every process with it open.
fn socket_owners() -> BTreeMap<u64, Vec<String>> {
    let mut owners: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            let who = format!("{pid} ({comm})");
            let list = owners.entry(inode).or_default();
            if !list.contains(&who) {
                list.push(who);
            }
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_packet_lines_parse() {
        let text = "sk               RefCnt Type Proto  Iface R Rmem   User   Inode\n\
                    ffff8880045d7000 3      3    0003   2     1 0      0      12345\n\
                    ffff8880045d8000 3      2    0800   0     1 0      0      777\n\
                    garbage\n";
        let s = parse_proc_net_packet(text);
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].protocol, s[0].ifindex, s[0].inode),
            (0x0003, 2, 12345)
        );
        assert!(s[0].taps_outgoing(2));
        assert!(!s[0].taps_outgoing(3));
        assert_eq!((s[1].protocol, s[1].ifindex), (0x0800, 0));
        assert!(
            !s[1].taps_outgoing(2),
            "an IP-only socket sees no outgoing frames"
        );
        let all = PacketSocket {
            ifindex: 0,
            protocol: 3,
            inode: 1,
            owners: vec![],
        };
        assert!(all.taps_outgoing(9));
    }

    #[test]
    fn loopback_is_local_and_has_an_index() {
        let lo = describe_device("lo");
        assert!(lo.loopback);
        assert!(lo.ifindex > 0);
        let facts = PathFacts::read("127.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap());
        assert!(facts.peer_is_local);
        assert_eq!(facts.device.map(|d| d.name), Some("lo".to_string()));
    }

    #[test]
    fn a_packet_socket_we_open_is_listed_with_us_as_its_owner() {
        // SAFETY: plain socket call; needs CAP_NET_RAW, skipped without it.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                i32::from((ETH_P_ALL).to_be()),
            )
        };
        if fd < 0 {
            eprintln!("skipped: no CAP_NET_RAW for a packet socket");
            return;
        }
        let me = format!("{} (", std::process::id());
        let found = packet_sockets()
            .into_iter()
            .any(|s| s.protocol == ETH_P_ALL && s.owners.iter().any(|o| o.starts_with(&me)));
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
        assert!(found, "our ETH_P_ALL socket is not in /proc/net/packet");
    }
}

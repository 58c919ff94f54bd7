//! Reading the node's network interfaces from the kernel: links and their addresses over
//! rtnetlink, converted to plain [`InterfaceInfo`] values (the pure type of `herald-l2`).
//!
//! Owns the only I/O here (one rtnetlink request pair per call). Layer 2 chooses announcing
//! interfaces from these values; BGP takes its source addresses from them. Neither mode
//! depends on the other for it.

use std::io;

use futures::TryStreamExt;
use herald_l2::frames::MacAddr;
pub use herald_l2::interfaces::InterfaceInfo;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use thiserror::Error;

/// Errors reading the interfaces.
#[derive(Debug, Error)]
pub enum InterfaceError {
    #[error("opening a netlink socket: {0}")]
    NetlinkOpen(#[source] io::Error),
    #[error("netlink request: {0}")]
    Netlink(#[from] rtnetlink::Error),
}

/// Reads all links and their addresses over rtnetlink (needs a tokio runtime).
pub async fn discover_interfaces() -> Result<Vec<InterfaceInfo>, InterfaceError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(InterfaceError::NetlinkOpen)?;
    let connection = tokio::spawn(connection);
    let result = async {
        let links: Vec<LinkMessage> = handle.link().get().execute().try_collect().await?;
        let addresses: Vec<AddressMessage> = handle.address().get().execute().try_collect().await?;
        Ok::<_, InterfaceError>(interfaces_from_netlink(&links, &addresses))
    }
    .await;
    connection.abort();
    result
}

/// Converts rtnetlink link and address messages into [`InterfaceInfo`]s, sorted by index.
pub fn interfaces_from_netlink(
    links: &[LinkMessage],
    addresses: &[AddressMessage],
) -> Vec<InterfaceInfo> {
    let mut interfaces: Vec<InterfaceInfo> = links
        .iter()
        .map(|link| {
            let mut name = String::new();
            let mut mac = None;
            for attribute in &link.attributes {
                match attribute {
                    LinkAttribute::IfName(n) => name.clone_from(n),
                    LinkAttribute::Address(bytes) => {
                        mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr);
                    }
                    _ => {}
                }
            }
            let flags = link.header.flags;
            InterfaceInfo {
                name,
                index: link.header.index,
                mac: mac.filter(|mac| *mac != MacAddr::ZERO),
                up: flags.contains(LinkFlags::Up),
                loopback: flags.contains(LinkFlags::Loopback),
                networks: Vec::new(),
            }
        })
        .collect();
    for message in addresses {
        // IPv4 point-to-point links put the peer in Address and ours in Local: prefer Local.
        let mut local = None;
        let mut address = None;
        for attribute in &message.attributes {
            match attribute {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                _ => {}
            }
        }
        let Some(ip) = local.or(address) else {
            continue;
        };
        let Ok(network) = IpNet::new(ip, message.header.prefix_len) else {
            continue;
        };
        if let Some(interface) = interfaces
            .iter_mut()
            .find(|i| i.index == message.header.index)
        {
            interface.networks.push(network);
        }
    }
    interfaces.sort_by_key(|interface| interface.index);
    interfaces
}

//! Whether a process really listens on an address, read from Linux's `/proc`: the socket table
//! of its network namespace (`/proc/<pid>/net/tcp`, `tcp6`) and its own descriptors. pingora binds
//! its listeners in the background and retries a taken port for ever; this is how the gateway
//! knows its listeners are its own before it says it is ready.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

/// How `/proc/net/tcp{,6}` writes an address: each 32-bit word of the IP in host (little-endian)
/// order, in upper-case hex, then the port.
fn proc_form(addr: SocketAddr) -> String {
    let ip: String = match addr.ip() {
        IpAddr::V4(ip) => format!("{:08X}", u32::from_le_bytes(ip.octets())),
        IpAddr::V6(ip) => ip
            .octets()
            .chunks(4)
            .map(|word| {
                format!(
                    "{:08X}",
                    u32::from_le_bytes(word.try_into().expect("4 bytes"))
                )
            })
            .collect(),
    };
    format!("{ip}:{:04X}", addr.port())
}

/// The inodes of the sockets listening on `addr` in the network namespace of `pid`.
fn listening_inodes(pid: &str, addr: SocketAddr) -> HashSet<String> {
    let table = if addr.is_ipv4() { "tcp" } else { "tcp6" };
    let wanted = proc_form(addr);
    let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
        return HashSet::new();
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local address, state (0A = LISTEN), inode
            (fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A"))
                .then(|| format!("socket:[{}]", fields.get(9).unwrap_or(&"")))
        })
        .collect()
}

/// Whether process `pid` (`None`: this one) holds a socket listening on `addr`.
pub fn listens_on(pid: Option<u32>, addr: SocketAddr) -> bool {
    let pid = pid.map_or_else(|| "self".to_string(), |p| p.to_string());
    let inodes = listening_inodes(&pid, addr);
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|target| target.to_str().is_some_and(|t| inodes.contains(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_the_form_proc_writes_them() {
        assert_eq!(
            proc_form("127.0.0.1:8080".parse().unwrap()),
            "0100007F:1F90"
        );
        assert_eq!(proc_form("0.0.0.0:80".parse().unwrap()), "00000000:0050");
        assert_eq!(
            proc_form("[::1]:443".parse().unwrap()),
            "00000000000000000000000001000000:01BB"
        );
    }

    #[test]
    fn a_listener_of_this_process_is_found_and_another_port_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(listens_on(None, addr));
        drop(listener);
        assert!(!listens_on(None, addr));
    }
}

#![no_std]
#![no_main]

mod bench;
mod clock;
mod console;
// mod leds;
// mod sensors;
mod stack;
// mod storage;
mod eth;
mod net;
mod rng;
mod semihosting;
mod sysctl;

use cortex_m_rt::entry;
use cortex_m_semihosting::hprintln;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpEndpoint, Ipv4Address};

#[entry]
fn main() -> ! {
    let cp = cortex_m::Peripherals::take().unwrap();
    sysctl::init_clocks();
    sysctl::enable(sysctl::gate::EMAC0 | sysctl::gate::EPHY0 | sysctl::gate::GPIOF);
    clock::start(cp.SYST);
    let mac = cortex_m::singleton!(: eth::Mac = eth::Mac::new()).unwrap();
    let addr = eth::Mac::address();
    mac.init(addr);
    hprintln!("mac {}", addr);
    let bufs = cortex_m::singleton!(: net::LinkBuffers = net::LinkBuffers::new()).unwrap();
    let mut rng = rng::Rng::new(&tek_proto::crypto::Key([1; 16]), 1, addr.0);
    let now = || Instant::from_millis(clock::now_ms() as i64);
    let mut link = net::Link::new(mac, HardwareAddress::Ethernet(addr), net::Addressing::Dhcp, rng.next_u64(), bufs, now());
    let mut resolved = false;
    let mut sent = false;
    loop {
        if let Some(ev) = link.poll(now()) {
            hprintln!("[{}] link {:?}", clock::now_ms(), ev);
            if !resolved { link.resolve("live.tek.test").ok(); }
        }
        if let Some(r) = link.resolve_result() {
            hprintln!("[{}] resolve {:?}", clock::now_ms(), r);
            resolved = true;
        }
        if link.settings().is_some() && !sent {
            link.bind(30000);
            link.send(IpEndpoint::new(Ipv4Address::new(10,0,2,2).into(), 9999), b"hello from qemu").unwrap();
            sent = true;
        }
        let mut buf = [0u8; 64];
        if let Some((n, from)) = link.recv(&mut buf) {
            hprintln!("[{}] got {:?} from {}", clock::now_ms(), core::str::from_utf8(&buf[..n]), from);
            semihosting::exit(true);
        }
        if clock::now_ms() > 15000 { semihosting::exit(false); }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    semihosting::exit(false)
}

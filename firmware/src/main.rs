//! # tek-firmware — the TEK pool controller on a TI Stellaris LM3S6965 (Cortex-M3)
//!
//! `main` only wires hardware to logic: the controller's brain is `tek-controller` (events in,
//! actions out, no I/O); this crate supplies the clock, the Ethernet MAC under smoltcp, flash,
//! the HALT input, sensors, relays and the status LED, and runs one cooperative loop:
//!
//! ```text
//! loop {
//!     poll the network link (frames <-> sockets; DHCP lease; DNS answers; datagrams in)
//!     feed the controller its events, advance its channel map (board inputs, Modbus RTU)
//!     carry out the controller's actions, in order (send, resolve, configure, persist, ...)
//!     open the UDP port the controller expects replies on
//!     sleep in WFI until the earliest deadline, or until a frame arrives
//! }
//! ```
//!
//! Modules by concern: [`sysctl`] (clock, clock gates), [`clock`] (SysTick time), [`eth`] (MAC
//! driver, smoltcp `phy::Device`), [`net`] (one IP link: interface + DHCP/DNS/UDP sockets),
//! [`storage`] (flash slots behind a trait, the log's region, the channel slots), [`bench`]
//! (identity and HALT from the test bench), [`sensors`] (simulated pool), [`channels`] (the
//! controller's channel part), [`rtu`] (the Modbus RTU line on UART2 and the board inputs), [`leds`], [`relays`], [`rng`], [`stack`] (stack
//! painting), [`semihosting`] (the QEMU host channel), [`console`]; the GSM path: [`uart`]
//! (UART1), [`modem`] (AT commands), [`ppp`] (PPP, IPv4/UDP and DNS over it), [`radioled`].
//!
//! No heap, no TCP, `unsafe` only in the drivers (each block with a `SAFETY:` comment). The
//! large state — the controller, its channel part, the MAC's frame buffers, the sockets'
//! buffers — lives in `static`s with `const` initialisers that are all zero (`.bss`: no flash,
//! no stack temporaries), each handed out once as a `&'static mut` by
//! [`static_cell::ConstStaticCell`].
#![no_std]
#![no_main]

mod app;
mod bench;
mod channels;
mod clock;
mod console;
mod eth;
mod leds;
mod modem;
mod net;
mod ppp;
mod radioled;
mod relays;
mod rng;
mod rtu;
#[cfg(feature = "rtu-test")]
mod rtu_test;
mod semihosting;
mod sensors;
mod stack;
mod storage;
mod sysctl;
mod uart;

use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use static_cell::ConstStaticCell;
use tek_controller::flash_log::FlashLog;
use tek_controller::record_log::FlashStore;
use tek_controller::{Controller, Iface, Setup};

use app::{App, FmtStatic, Shown};
use bench::{Bench, HaltInput};
use channels::FwChannels;
use modem::Modem;
use net::{Link, LinkBuffers, UdpPayload};
#[cfg(feature = "rtu-test")]
use rtu_test::RtuTest;
use storage::{ChannelSlots, Flash, HostFileFlash, HostNor};

/// Firmware version reported in status.
const FIRMWARE: [u8; 3] = [0, 1, 0];
/// How often the sensors are sampled (the thermostat acts on every sample).
const SAMPLE_MS: u64 = 10_000;
/// How often the stack high-water mark is reported when it grew.
const REPORT_MS: u64 = 10_000;

type Ctl = Controller<FlashStore<HostNor>, FwChannels>;
type EthLink = Link<eth::Mac>;

#[entry]
fn main() -> ! {
    stack::paint();
    let mut app = boot();
    // Boot and the loop are measured apart: building the controller is the deepest boot-time
    // use, and says nothing about the loop.
    app.boot_stack = stack::peak();
    stack::paint();
    let rx = RX.take();
    loop {
        let now = clock::now_ms();
        app.network(now, rx);
        app.sample(now);
        #[cfg(feature = "rtu-test")]
        app.rtu.poll(now, &mut app.bus);
        app.act(now);
        app.housekeeping(now);
        app.sleep();
    }
}

/// Everything before the loop: clocks, the bench's identity, flash, the controller, the MAC.
/// Out of line so its stack frame (command line, flash records) is gone once the loop runs.
#[inline(never)]
fn boot() -> App {
    let cp = cortex_m::Peripherals::take().unwrap_or_else(|| fatal("core peripherals taken"));
    sysctl::init_clocks();
    sysctl::enable(
        sysctl::gate::EMAC0
            | sysctl::gate::EPHY0
            | sysctl::gate::GPIOB
            | sysctl::gate::GPIOD
            | sysctl::gate::GPIOF
            | sysctl::gate::GPIOG,
    );
    clock::start(cp.SYST);
    log!(
        "tek firmware {}.{}.{} on LM3S6965, {} MHz",
        FIRMWARE[0],
        FIRMWARE[1],
        FIRMWARE[2],
        sysctl::SYSCLK_HZ / 1_000_000
    );

    // The command line, parsed in place: the names borrow from this buffer, which is gone
    // (with everything else of this frame) before the loop starts.
    let mut cmdline = [0u8; 320];
    let bench = match semihosting::cmdline(&mut cmdline).map(Bench::parse) {
        Some(Ok(b)) => b,
        Some(Err(e)) => fatal_args(e),
        None => fatal("no semihosting command line (identity missing, or longer than 320 bytes)"),
    };
    let mut flash = HostFileFlash::new(bench.flash_path)
        .unwrap_or_else(|_| fatal("cannot open the flash file"));
    let halt = bench.held_at_power_up();
    if halt {
        log!("halt: HALT held at power-up");
    }

    // The telemetry log in flash (PROTOCOL.md 18): what earlier boots left waits in it.
    let ctl: &'static mut Ctl = CONTROLLER.take();
    match storage::log_region(bench.flash_path).map(FlashLog::recover) {
        Ok(Ok(log)) => {
            log!("log: {} records waiting in flash", log.len());
            ctl.set_log(FlashStore::new(log));
        }
        Ok(Err(e)) => fatal_log(e),
        Err(_) => fatal("cannot open the log's flash file"),
    }
    // The channel part, in its own static; the controller's power-up starts it.
    ctl.set_channels(channels::take().unwrap_or_else(|| fatal("channel part taken")));
    let mut channel_slots = ChannelSlots::new(bench.flash_path)
        .unwrap_or_else(|_| fatal("cannot open the channel slots' flash file"));
    // Power-up in place in the static: the controller reads both flash slots into its own buffer
    // and decodes only the newer valid record, straight into its fields.
    let found = ctl.boot_from_flash(
        Setup {
            device_id: bench.identity.device_id,
            key: bench.identity.key.0,
            factory_servers: &bench.identity.servers,
            firmware: FIRMWARE,
            halt,
            has_gsm: bench.gsm,
            stored: None,
        },
        &mut |slot, buf| match flash.read(slot, buf) {
            Ok(()) => true,
            Err(e) => {
                log!("flash: slot {} unreadable ({:?})", slot, e);
                false
            }
        },
        clock::now_ms(),
    );
    match found {
        Some(h) => log!(
            "flash: record seq {} boot {} config version {}{}",
            h.seq,
            h.boot,
            h.version,
            FmtStatic(ctl.config().1.ethernet)
        ),
        None => log!("flash: blank"),
    }
    // The split configuration the controller's record names runs again.
    channels::restore(ctl, &mut channel_slots, clock::now_ms());
    log!(
        "controller: device {} boot {} log in flash, channel part: up to {} channels, {} bus",
        bench.identity.device_id,
        ctl.boot_counter(),
        channels::CHANNELS,
        channels::CAPS.max_buses
    );

    if bench.probe_s > 0 {
        ctl.set_probe_interval(bench.probe_s.saturating_mul(1000));
    }
    // The modem on UART1, when the board has one (`gsm` on the command line).
    let modem = bench.gsm.then(|| {
        sysctl::enable_uart(sysctl::uart_gate::UART1);
        let uart = uart::Uart::new(uart::UART1, sysctl::SYSCLK_HZ, uart::Format::MODEM);
        // SAFETY: UART1's handler (`DefaultHandler`) only moves bytes into the ring inside a
        // critical section; unmasking its line cannot break a critical section elsewhere.
        unsafe { NVIC::unmask(uart::UART1.irq()) };
        log!("gsm: modem on UART1, {} baud", uart::Format::MODEM.baud);
        Modem::new(uart, ppp::Ppp::take().unwrap_or_else(|| fatal("PPP taken")))
    });

    let bus = rtu::BoardBus::boot();
    #[cfg(feature = "rtu-test")]
    let rtu = RtuTest::boot();

    let mac: &'static mut eth::Mac = MAC.take();
    let mac_addr = eth::Mac::address();
    mac.init(mac_addr);
    // SAFETY: the MAC's handler (`DefaultHandler` below) only masks the MAC's own interrupt;
    // unmasking its line cannot break a critical section elsewhere.
    unsafe { NVIC::unmask(eth::Irq) };
    let rng = rng::Rng::new(&bench.identity.key, ctl.boot_counter(), mac_addr.0);
    log!("eth: MAC {}", mac_addr);
    // QEMU does not model the PHY; on the board the link state comes from the PHY's status
    // register over MII. Either way the controller learns it here.
    ctl.link(clock::now_ms(), Iface::Ethernet, true);

    App {
        ctl,
        flash,
        channel_slots,
        bus,
        channels_shown: channels::Shown::default(),
        mac: Some(mac),
        eth: None,
        eth_buffers: Some((ETH_BUFFERS.take(), ETH_PAYLOAD.take())),
        leds: leds::StatusLed::new(),
        radio_led: radioled::RadioLed::new(),
        modem,
        gsm_query: None,
        relays: relays::Relays::new(),
        sensors: sensors::PoolModel::new(),
        rng,
        query: None,
        next_sample: 0,
        next_report: REPORT_MS,
        boot_stack: 0,
        reported_stack: 0,
        shown: Shown::default(),
        logged: 0,
        run_until: (bench.run_s > 0).then(|| u64::from(bench.run_s) * 1000),
        #[cfg(feature = "rtu-test")]
        rtu,
    }
}

/// The controller (its telemetry log is in flash). `Controller::blank()` is all zero bytes,
/// so this sits in `.bss` (`scripts/firmware-size.sh` checks that) and costs no flash; `boot`
/// powers it up in place.
static CONTROLLER: ConstStaticCell<Ctl> = ConstStaticCell::new(Controller::blank());
/// The MAC's two frame buffers.
static MAC: ConstStaticCell<eth::Mac> = ConstStaticCell::new(eth::Mac::new());
/// The Ethernet link's socket bookkeeping and UDP payload buffers.
static ETH_BUFFERS: ConstStaticCell<LinkBuffers> = ConstStaticCell::new(LinkBuffers::new());
static ETH_PAYLOAD: ConstStaticCell<UdpPayload> = ConstStaticCell::new(UdpPayload::new());
/// The loop's receive buffer: one datagram, decrypted in place by the controller.
/// Also the PPP frame buffer (a datagram + IPv4/UDP + PPP header and FCS): a GSM datagram is
/// decrypted where its frame landed; the Ethernet path uses the buffer between PPP frames.
static RX: ConstStaticCell<[u8; ppp::FRAME_BUF]> = ConstStaticCell::new([0; ppp::FRAME_BUF]);

fn fatal(why: &str) -> ! {
    log!("fatal: {}", why);
    semihosting::exit(false)
}

fn fatal_log(e: tek_controller::flash_log::Error<storage::FlashError>) -> ! {
    log!("fatal: the log's flash: {:?}", e);
    semihosting::exit(false)
}

fn fatal_args(e: bench::BenchError) -> ! {
    log!("fatal: command line: {}", e);
    semihosting::exit(false)
}

/// Interrupts without a handler of their own. Only the MAC's, the modem UART's and the Modbus
/// UART's are enabled.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == eth::IRQ as i16 {
        eth::on_interrupt();
        return;
    }
    if uart::UART1.is_irq(irqn) {
        uart::UART1.on_interrupt();
        return;
    }
    if uart::UART2.is_irq(irqn) {
        rtu::on_interrupt();
        return;
    }
    fatal("unexpected interrupt");
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    cortex_m_semihosting::hprintln!("fatal: hard fault at pc {:#010x}", frame.pc());
    semihosting::exit(false)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m_semihosting::hprintln!("fatal: panic: {}", info);
    semihosting::exit(false)
}

//! Monotonic time from SysTick: a 10 ms tick counted by the SysTick exception, refined to the
//! millisecond by the counter's current value.
//!
//! The tick period is also the longest the main loop sleeps in `WFI` without looking at the clock,
//! so timers (handshake retries, DHCP) fire within 10 ms of their deadline.

use core::cell::Cell;
use core::sync::atomic::{compiler_fence, Ordering};
use cortex_m::interrupt::Mutex;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;

use crate::sysctl::SYSCLK_HZ;

/// Milliseconds per SysTick interrupt.
pub const TICK_MS: u32 = 10;
const CYCLES_PER_MS: u32 = SYSCLK_HZ / 1000;
const RELOAD: u32 = CYCLES_PER_MS * TICK_MS - 1;

static TICKS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));
/// The last time returned, so time never runs backwards (see [`now_ms`]).
static LAST: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// Starts SysTick on the core clock with its interrupt enabled.
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Milliseconds since [`start`], never decreasing.
///
/// If the SysTick exception cannot run for more than one period the counter wraps more than once
/// and ticks are lost; then the refinement by the counter value could step back by up to 9 ms.
/// That happens in QEMU while a semihosting call blocks the guest; it cannot happen on the board
/// (nothing masks interrupts for 10 ms). Clamping to the last value keeps time monotonic, which
/// smoltcp and the controller rely on.
pub fn now_ms() -> u64 {
    let t = raw_ms();
    cortex_m::interrupt::free(|cs| {
        let last = LAST.borrow(cs);
        let t = t.max(last.get());
        last.set(t);
        t
    })
}

/// Microseconds since [`start`], from the tick count and the counter (not clamped like
/// [`now_ms`]: the Modbus line timing measures short intervals with it and treats a step back
/// as no time passed). Also called from the UART2 interrupt, where a SysTick may be pending
/// behind it: a pending tick is counted, so the time is never early (if the counter wrapped
/// just after it was read, it is one tick late: a silence looks shorter, and a request waits
/// longer, never less).
pub fn now_us() -> u64 {
    loop {
        let before = cortex_m::interrupt::free(|cs| TICKS.borrow(cs).get());
        let current = SYST::get_current();
        let pending = cortex_m::peripheral::SCB::is_pendst_pending();
        compiler_fence(Ordering::SeqCst);
        let after = cortex_m::interrupt::free(|cs| TICKS.borrow(cs).get());
        if before == after {
            let ticks = before + u64::from(pending);
            let into_tick = (RELOAD - current.min(RELOAD)) / (CYCLES_PER_MS / 1000);
            return ticks * u64::from(TICK_MS) * 1000 + u64::from(into_tick);
        }
    }
}

fn raw_ms() -> u64 {
    loop {
        let before = cortex_m::interrupt::free(|cs| TICKS.borrow(cs).get());
        let current = SYST::get_current();
        compiler_fence(Ordering::SeqCst);
        let after = cortex_m::interrupt::free(|cs| TICKS.borrow(cs).get());
        // A tick between the two reads makes `current` ambiguous: read again.
        if before == after {
            let into_tick = (RELOAD - current.min(RELOAD)) / CYCLES_PER_MS;
            return before * u64::from(TICK_MS) + u64::from(into_tick);
        }
    }
}

#[exception]
fn SysTick() {
    cortex_m::interrupt::free(|cs| {
        let t = TICKS.borrow(cs);
        t.set(t.get() + 1);
    });
}

//! The LM3S6965 system control block: the system clock and the peripheral clock gates.
//!
//! The chip comes out of reset on its internal oscillator (12 MHz ±30 %). We switch to the PLL
//! fed by the evaluation board's 8 MHz crystal and divide its 200 MHz by 4: 50 MHz, the chip's
//! maximum. QEMU's model ignores the oscillator fields and computes the clock as
//! 200 MHz / (SYSDIV + 1) from the same register, so both run at [`SYSCLK_HZ`] — out of reset QEMU
//! runs at 200/16 = 12.5 MHz, the "4 % fast" a 12 MHz assumption sees.
//!
//! Register offsets and bits: LM3S6965 datasheet, "System Control".

use core::ptr::{read_volatile, write_volatile};

/// The system clock after [`init_clocks`], in Hz.
pub const SYSCLK_HZ: u32 = 50_000_000;

const SYSCTL: usize = 0x400F_E000;
const RIS: usize = SYSCTL + 0x050;
const RCC: usize = SYSCTL + 0x060;
const RCGC1: usize = SYSCTL + 0x104;
const RCGC2: usize = SYSCTL + 0x108;
/// Clock gate bits of the UARTs in RCGC1 (UART0 bit 0, UART1 bit 1, UART2 bit 2).
pub mod uart_gate {
    /// UART1, the modem line.
    pub const UART1: u32 = 1 << 1;
    /// UART2, the Modbus RTU bus.
    pub const UART2: u32 = 1 << 2;
}

const RCC_MOSCDIS: u32 = 1 << 0;
const RCC_OSCSRC_MASK: u32 = 0b11 << 4;
const RCC_XTAL_MASK: u32 = 0b1111 << 6;
const RCC_XTAL_8MHZ: u32 = 0xE << 6;
const RCC_BYPASS: u32 = 1 << 11;
const RCC_PWRDN: u32 = 1 << 13;
const RCC_USESYSDIV: u32 = 1 << 22;
const RCC_SYSDIV_MASK: u32 = 0b1111 << 23;
/// SYSDIV = 3: 200 MHz / 4.
const RCC_SYSDIV_50MHZ: u32 = 3 << 23;
const RIS_PLLLRIS: u32 = 1 << 6;

/// Clock gate bits in RCGC2.
pub mod gate {
    /// GPIO port B (the Radio LED on PB0).
    pub const GPIOB: u32 = 1 << 1;
    /// GPIO port D (UART1's pins, PD2 RX / PD3 TX: the modem).
    pub const GPIOD: u32 = 1 << 3;
    /// GPIO port F (the status LED).
    pub const GPIOF: u32 = 1 << 5;
    /// GPIO port G (UART2's pins, PG0 RX / PG1 TX: the Modbus bus).
    pub const GPIOG: u32 = 1 << 6;
    /// Ethernet MAC.
    pub const EMAC0: u32 = 1 << 28;
    /// Ethernet PHY.
    pub const EPHY0: u32 = 1 << 30;
}

/// Runs the core from the PLL at [`SYSCLK_HZ`] (the datasheet's sequence: bypass the PLL, set
/// the crystal and power the PLL up, wait for lock, then select it with the divider).
pub fn init_clocks() {
    // SAFETY: RCC and RIS are the SYSCTL registers at their datasheet addresses; nothing else
    // touches them, and this runs once at boot before any peripheral depends on the clock.
    unsafe {
        let mut rcc = read_volatile(RCC as *const u32);
        rcc |= RCC_BYPASS;
        rcc &= !RCC_USESYSDIV;
        write_volatile(RCC as *mut u32, rcc);
        rcc &= !(RCC_XTAL_MASK | RCC_OSCSRC_MASK | RCC_PWRDN | RCC_MOSCDIS);
        rcc |= RCC_XTAL_8MHZ;
        write_volatile(RCC as *mut u32, rcc);
        rcc = (rcc & !RCC_SYSDIV_MASK) | RCC_SYSDIV_50MHZ | RCC_USESYSDIV;
        write_volatile(RCC as *mut u32, rcc);
        // Bounded: a PLL that never locks leaves us on the bypass clock rather than hanging.
        for _ in 0..1_000_000 {
            if read_volatile(RIS as *const u32) & RIS_PLLLRIS != 0 {
                break;
            }
        }
        rcc &= !RCC_BYPASS;
        write_volatile(RCC as *mut u32, rcc);
    }
}

/// Opens the clock gates in `bits` (see [`gate`]) and waits the few cycles the datasheet asks for
/// before the peripheral's registers may be touched.
pub fn enable(bits: u32) {
    // SAFETY: read-modify-write of RCGC2 at boot, single-threaded; only sets gate bits.
    unsafe {
        let v = read_volatile(RCGC2 as *const u32);
        write_volatile(RCGC2 as *mut u32, v | bits);
        let _ = read_volatile(RCGC2 as *const u32);
    }
    cortex_m::asm::delay(16);
}

/// Opens UART clock gates in RCGC1 (see [`uart_gate`]), as [`enable`] does for RCGC2.
pub fn enable_uart(bits: u32) {
    // SAFETY: read-modify-write of RCGC1 at boot, single-threaded; only sets gate bits.
    unsafe {
        let v = read_volatile(RCGC1 as *const u32);
        write_volatile(RCGC1 as *mut u32, v | bits);
        let _ = read_volatile(RCGC1 as *const u32);
    }
    cortex_m::asm::delay(16);
}

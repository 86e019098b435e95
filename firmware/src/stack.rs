//! Peak stack use by stack painting: at boot every free word between the end of the statics and
//! the current stack pointer is filled with a pattern; the deepest word no longer holding it is
//! the high-water mark.
//!
//! cortex-m-rt places the stack at the top of RAM growing down towards the statics, with no heap
//! in between (`__sheap` is the end of .bss/.uninit), so this region is exactly the free RAM.

const PAINT: u32 = 0xA5C3_5A3C;
/// Words just below the live stack pointer left unpainted: `paint` itself runs there.
const MARGIN_WORDS: usize = 32;

extern "C" {
    static mut __sheap: u32;
    static _stack_start: u32;
}

fn bounds() -> (*mut u32, *mut u32) {
    // Only the addresses of the linker symbols are taken, never their contents.
    (
        core::ptr::addr_of_mut!(__sheap),
        core::ptr::addr_of!(_stack_start) as *mut u32,
    )
}

/// Paints the free stack below the caller's frame. Call first thing in `main` (and again to
/// start a new measurement).
pub fn paint() {
    let (bottom, _) = bounds();
    let sp = cortex_m::register::msp::read() as *mut u32;
    // SAFETY: [bottom, sp - MARGIN) lies between the end of the statics and the live stack
    // frame: memory nothing has used yet and nothing references. Volatile writes so the compiler
    // keeps stores to memory it believes unused.
    unsafe {
        let end = sp.wrapping_sub(MARGIN_WORDS);
        let mut p = bottom;
        while p < end {
            p.write_volatile(PAINT);
            p = p.add(1);
        }
    }
}

/// Bytes of stack used at the deepest point since [`paint`].
pub fn peak() -> usize {
    let (bottom, top) = bounds();
    // SAFETY: reads words of RAM inside [bottom, top), all of which is mapped.
    unsafe {
        let mut p = bottom;
        while p < top && p.read_volatile() == PAINT {
            p = p.add(1);
        }
        top as usize - p as usize
    }
}

/// Bytes between the end of the statics and the top of RAM (the most the stack could use).
pub fn available() -> usize {
    let (bottom, top) = bounds();
    top as usize - bottom as usize
}

//! Bytes read and written one at a time, with volatile accesses: the
//! compiler may not turn these loops into calls to the C library's
//! `memcpy`, `memcmp` or `strlen`, which are not usable yet.

use core::ptr::{read_volatile, write_volatile};

/// Bytes somewhere in memory, read one at a time.
#[derive(Clone, Copy)]
pub(crate) struct Bytes {
    pub(crate) ptr: *const u8,
    pub(crate) len: usize,
}

impl Bytes {
    pub(crate) const fn of(s: &'static [u8]) -> Bytes {
        Bytes {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// A NUL-terminated string.
    pub(crate) unsafe fn cstr(ptr: *const u8) -> Bytes {
        let mut len = 0;
        // SAFETY: the caller passes a NUL-terminated string.
        while unsafe { read_volatile(ptr.add(len)) } != 0 {
            len += 1;
        }
        Bytes { ptr, len }
    }

    /// The byte at `i`, which must be below `len`.
    #[inline(always)]
    pub(crate) fn at(self, i: usize) -> u8 {
        // SAFETY: every `Bytes` is readable for `len` bytes.
        unsafe { read_volatile(self.ptr.add(i)) }
    }

    pub(crate) fn from(self, i: usize) -> Bytes {
        let i = if i < self.len { i } else { self.len };
        Bytes {
            // SAFETY: within (or one past) the bytes.
            ptr: unsafe { self.ptr.add(i) },
            len: self.len - i,
        }
    }

    pub(crate) fn take(self, n: usize) -> Bytes {
        Bytes {
            ptr: self.ptr,
            len: if n < self.len { n } else { self.len },
        }
    }

    pub(crate) fn starts_with(self, prefix: Bytes) -> bool {
        if prefix.len > self.len {
            return false;
        }
        let mut i = 0;
        while i < prefix.len {
            if self.at(i) != prefix.at(i) {
                return false;
            }
            i += 1;
        }
        true
    }

    pub(crate) fn is(self, other: Bytes) -> bool {
        self.len == other.len && self.starts_with(other)
    }

    /// Where `needle` (not empty) first occurs at or after `from`.
    pub(crate) fn find(self, needle: Bytes, from: usize) -> Option<usize> {
        let mut i = from;
        while i + needle.len <= self.len {
            if self.from(i).starts_with(needle) {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// The value of `NAME=VALUE` when this is one with `name_eq`
    /// (`NAME=`).
    pub(crate) fn value_of(self, name_eq: Bytes) -> Option<Bytes> {
        self.starts_with(name_eq).then(|| self.from(name_eq.len))
    }
}

/// A buffer being filled.
pub(crate) struct Buf {
    pub(crate) ptr: *mut u8,
    pub(crate) cap: usize,
    pub(crate) len: usize,
}

impl Buf {
    pub(crate) fn put_byte(&mut self, b: u8) -> bool {
        if self.len >= self.cap {
            return false;
        }
        // SAFETY: below the capacity of the buffer.
        unsafe { write_volatile(self.ptr.add(self.len), b) };
        self.len += 1;
        true
    }

    pub(crate) fn put(&mut self, b: Bytes) -> bool {
        if b.len > self.cap - self.len {
            return false;
        }
        let mut i = 0;
        while i < b.len {
            // SAFETY: the room was checked above.
            unsafe { write_volatile(self.ptr.add(self.len + i), b.at(i)) };
            i += 1;
        }
        self.len += b.len;
        true
    }

    pub(crate) fn put_le(&mut self, v: u64, n: usize) -> bool {
        let mut i = 0;
        while i < n {
            if !self.put_byte((v >> (8 * i)) as u8) {
                return false;
            }
            i += 1;
        }
        true
    }

    /// A length-prefixed string.
    pub(crate) fn put_str(&mut self, b: Bytes) -> bool {
        self.put_le(b.len as u64, 4) && self.put(b)
    }

    pub(crate) fn bytes(&self) -> Bytes {
        Bytes {
            ptr: self.ptr,
            len: self.len,
        }
    }
}

pub(crate) fn le(b: Bytes, at: usize, n: usize) -> u64 {
    let mut v = 0u64;
    let mut i = 0;
    while i < n {
        v |= (b.at(at + i) as u64) << (8 * i);
        i += 1;
    }
    v
}

//! [`ByteSize`]: how many bytes a value holds.

use std::mem::size_of;
use std::sync::Arc;

/// The bytes a value holds: its inline size plus what it owns on the heap (the
/// capacity of its buffers, not only their length). What a
/// [`MemoryBudget`](super::MemoryBudget) charges for an element.
///
/// Implemented for numbers, `bool`, `char`, strings, `Vec`, `VecDeque`, boxes,
/// `Option`, tuples and arrays. For a type of your own, implement it and
/// register the type with [`MemoryBudget::sized`](super::MemoryBudget::sized)
/// (or give a closure to [`MemoryBudget::sizer`](super::MemoryBudget::sizer)).
///
/// # Examples
///
/// ```
/// use weir_runtime::memory::ByteSize;
///
/// struct Event {
///     id: u64,
///     payload: Vec<u8>,
/// }
///
/// impl ByteSize for Event {
///     fn byte_size(&self) -> usize {
///         size_of::<Self>() + self.payload.capacity()
///     }
/// }
///
/// let e = Event { id: 1, payload: Vec::with_capacity(1000) };
/// assert_eq!(e.byte_size(), size_of::<Event>() + 1000);
/// assert_eq!("abc".to_owned().byte_size(), size_of::<String>() + 3);
/// ```
pub trait ByteSize {
    /// Inline size plus owned heap bytes.
    fn byte_size(&self) -> usize;

    /// Heap bytes only (what a container of this type adds for each element
    /// beyond its inline size).
    fn heap_size(&self) -> usize {
        self.byte_size().saturating_sub(size_of_val(self))
    }
}

macro_rules! inline_only {
    ($($t:ty),* $(,)?) => {$(
        impl ByteSize for $t {
            fn byte_size(&self) -> usize {
                size_of::<$t>()
            }
        }
    )*};
}

inline_only!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    ()
);

impl ByteSize for String {
    fn byte_size(&self) -> usize {
        size_of::<String>() + self.capacity()
    }
}

impl ByteSize for Box<str> {
    fn byte_size(&self) -> usize {
        size_of::<Self>() + self.len()
    }
}

impl ByteSize for Arc<str> {
    /// The whole string: an `Arc` shared by several elements is counted by each.
    fn byte_size(&self) -> usize {
        size_of::<Self>() + self.len()
    }
}

impl<T: ByteSize> ByteSize for Vec<T> {
    fn byte_size(&self) -> usize {
        let spare = self.capacity() - self.len();
        size_of::<Self>()
            + spare * size_of::<T>()
            + self.iter().map(ByteSize::byte_size).sum::<usize>()
    }
}

impl<T: ByteSize> ByteSize for std::collections::VecDeque<T> {
    fn byte_size(&self) -> usize {
        let spare = self.capacity() - self.len();
        size_of::<Self>()
            + spare * size_of::<T>()
            + self.iter().map(ByteSize::byte_size).sum::<usize>()
    }
}

impl<T: ByteSize> ByteSize for Box<[T]> {
    fn byte_size(&self) -> usize {
        size_of::<Self>() + self.iter().map(ByteSize::byte_size).sum::<usize>()
    }
}

impl<T: ByteSize> ByteSize for Arc<[T]> {
    /// The whole slice: an `Arc` shared by several elements is counted by each.
    fn byte_size(&self) -> usize {
        size_of::<Self>() + self.iter().map(ByteSize::byte_size).sum::<usize>()
    }
}

impl<T: ByteSize> ByteSize for Box<T> {
    fn byte_size(&self) -> usize {
        size_of::<Self>() + (**self).byte_size()
    }
}

impl<T: ByteSize> ByteSize for Option<T> {
    fn byte_size(&self) -> usize {
        size_of::<Self>() + self.as_ref().map_or(0, ByteSize::heap_size)
    }
}

impl<T: ByteSize, const N: usize> ByteSize for [T; N] {
    fn byte_size(&self) -> usize {
        size_of::<Self>() + self.iter().map(ByteSize::heap_size).sum::<usize>()
    }
}

macro_rules! tuple {
    ($($name:ident),+) => {
        impl<$($name: ByteSize),+> ByteSize for ($($name,)+) {
            #[allow(non_snake_case)]
            fn byte_size(&self) -> usize {
                let ($($name,)+) = self;
                size_of::<Self>() $(+ $name.heap_size())+
            }
        }
    };
}

tuple!(A);
tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_count_inline_and_heap_bytes() {
        assert_eq!(7u64.byte_size(), 8);
        let v: Vec<u8> = Vec::with_capacity(1024);
        assert_eq!(v.byte_size(), size_of::<Vec<u8>>() + 1024);
        let s = String::from("hello");
        assert_eq!(s.byte_size(), size_of::<String>() + s.capacity());
        let nested = vec![String::from("ab"), String::from("cde")];
        assert_eq!(
            nested.byte_size(),
            size_of::<Vec<String>>() + 2 * size_of::<String>() + 2 + 3
        );
        let pair = (String::from("key"), 5u64);
        assert_eq!(pair.byte_size(), size_of::<(String, u64)>() + 3);
        assert_eq!(
            Some(vec![0u8; 4]).byte_size(),
            size_of::<Option<Vec<u8>>>() + 4
        );
        assert_eq!(None::<Vec<u8>>.byte_size(), size_of::<Option<Vec<u8>>>());
        assert_eq!(Box::new(3u32).byte_size(), size_of::<Box<u32>>() + 4);
    }
}

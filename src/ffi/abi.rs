//! The evolvable ABI: structs that carry their size, and the library's version at run time.
//!
//! Every struct the caller fills (`lofi_load_params`, `lofi_run_params`, `lofi_pnp_params`,
//! `lofi_operator`) starts with `size_t struct_size`, set by its `lofi_default_*()` constructor to
//! `sizeof` the struct *as the caller's lofi.h declares it*. The library reads only the bytes the
//! caller's size covers and takes defaults for the fields a smaller (older) layout lacks.
//!
//! Structs the library writes (`lofi_model_info`, `lofi_run_report`, `lofi_pnp_residuals`) also
//! start with `struct_size`, but the caller does not set it: the size comes with the call (the
//! `*_sized()` entry points; lofi.h's inline wrappers pass `sizeof` at the caller's compile
//! time), the library writes only that many bytes and stores in `struct_size` how many it wrote.
//!
//! A version of a struct only ever appends fields, so that every older layout is a prefix of the
//! newer ones and has a smaller `sizeof`. [`Versioned::SIZES`] lists the `sizeof` of every layout
//! released so far; a size that is none of them is refused (it catches a struct that was never
//! initialised), except that a struct the library writes may be larger than any it knows (a
//! program built against a newer lofi.h): then the known part is written and `struct_size` says
//! where it ends.

use super::error::{guard, lofi_status};
use crate::error::{Error, Result};

/// `sizeof` of a layout whose fields end where `next_field` of the current layout starts, with the
/// current layout's alignment: the size of an older version of a struct that had the same
/// leading fields.
pub(crate) const fn size_up_to(next_field: usize, align: usize) -> usize {
    next_field.div_ceil(align) * align
}

/// A C struct with a leading `size_t struct_size`.
///
/// # Safety
/// The implementor must be `#[repr(C)]`, start with a `usize` field, and be valid for any bit
/// pattern in the bytes past the first `SIZES[0]` (plain numbers, nullable pointers, `Option`
/// function pointers): the library copies caller bytes over it.
pub(crate) unsafe trait Versioned: Copy {
    /// The C name, for messages.
    const NAME: &'static str;
    /// `sizeof` of every released layout, oldest first; the last one is `size_of::<Self>()`.
    const SIZES: &'static [usize];
    /// What the library writes into fields the caller's layout does not have.
    fn defaults() -> Self;
}

fn known_sizes<T: Versioned>() -> String {
    T::SIZES.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
}

/// Checks a caller's `struct_size` for a struct the caller filled. Larger than this library's
/// layout is refused: the caller set fields this library does not know and would ignore.
pub(crate) fn check_in_size<T: Versioned>(size: usize, field: &str) -> Result<()> {
    let current = std::mem::size_of::<T>();
    let name = T::NAME;
    if size == 0 {
        return Err(Error::invalid_argument(format!(
            "{field} is 0: initialise the {name} with lofi_default_{}() (or set struct_size = sizeof({name}))",
            name.trim_start_matches("lofi_")
        )));
    }
    if size > current {
        return Err(Error::invalid_argument(format!(
            "{field} = {size} is larger than this library's {name} ({current} bytes): the program was built \
             against a newer lofi.h than this liblofi {} (check with lofi_check_version())",
            env!("CARGO_PKG_VERSION")
        )));
    }
    if size < T::SIZES[0] {
        return Err(Error::invalid_argument(format!(
            "{field} = {size} is smaller than the first version of {name} ({} bytes): is the struct \
             initialised with its lofi_default_*() constructor?",
            T::SIZES[0]
        )));
    }
    if !T::SIZES.contains(&size) {
        return Err(Error::invalid_argument(format!(
            "{field} = {size} is not the size of any version of {name} (known: {}): is the struct \
             initialised with its lofi_default_*() constructor?",
            known_sizes::<T>()
        )));
    }
    Ok(())
}

/// Checks the size of a struct the library writes: any released size, or larger (a newer lofi.h).
pub(crate) fn check_out_size<T: Versioned>(size: usize, what: &str) -> Result<()> {
    let current = std::mem::size_of::<T>();
    if size < T::SIZES[0] {
        return Err(Error::invalid_argument(format!(
            "{what} = {size} is smaller than the first version of {} ({} bytes; pass sizeof)",
            T::NAME,
            T::SIZES[0]
        )));
    }
    if size < current && !T::SIZES.contains(&size) {
        return Err(Error::invalid_argument(format!(
            "{what} = {size} is not the size of any version of {} (known: {}; pass sizeof)",
            T::NAME,
            known_sizes::<T>()
        )));
    }
    Ok(())
}

/// Reads a caller-filled struct: the bytes its `struct_size` covers over the defaults. The result
/// has this library's `struct_size`.
///
/// # Safety
/// `ptr` must be non-null and valid for reads of the `struct_size` it declares.
pub(crate) unsafe fn read_in<T: Versioned>(ptr: *const T) -> Result<T> {
    let size = (ptr as *const usize).read_unaligned();
    check_in_size::<T>(size, &format!("{}.struct_size", T::NAME))?;
    let mut value = T::defaults();
    std::ptr::copy_nonoverlapping(ptr as *const u8, &mut value as *mut T as *mut u8, size);
    (&mut value as *mut T as *mut usize).write(std::mem::size_of::<T>());
    Ok(value)
}

/// Reads a caller-filled struct, or the defaults for NULL.
///
/// # Safety
/// As [`read_in`], for a non-null `ptr`.
pub(crate) unsafe fn read_in_or_default<T: Versioned>(ptr: *const T) -> Result<T> {
    if ptr.is_null() {
        Ok(T::defaults())
    } else {
        read_in(ptr)
    }
}

/// Writes `value` into a struct of `size` bytes at `ptr` (nothing for NULL): the first
/// `min(size, sizeof)` bytes, with `struct_size` set to that; bytes beyond this library's layout
/// (a newer caller) are zeroed. `size` must have passed [`check_out_size`].
///
/// # Safety
/// `ptr` must be NULL or valid for writes of `size` bytes.
pub(crate) unsafe fn write_out<T: Versioned>(ptr: *mut T, size: usize, mut value: T) {
    if ptr.is_null() {
        return;
    }
    let current = std::mem::size_of::<T>();
    let n = size.min(current);
    (&mut value as *mut T as *mut usize).write(n);
    std::ptr::copy_nonoverlapping(&value as *const T as *const u8, ptr as *mut u8, n);
    if size > current {
        std::ptr::write_bytes((ptr as *mut u8).add(current), 0, size - current);
    }
}

/// Fills a caller's struct with the defaults for the size it declares (the `lofi_init_*()`
/// functions). A size larger than this library's layout gets the known fields, zeros after them,
/// and an error.
///
/// # Safety
/// `ptr` must be NULL or valid for writes of the `struct_size` it declares.
pub(crate) unsafe fn init<T: Versioned>(ptr: *mut T) -> Result<()> {
    if ptr.is_null() {
        return Err(Error::invalid_argument(format!("the {} pointer is NULL", T::NAME)));
    }
    let size = (ptr as *const usize).read_unaligned();
    let current = std::mem::size_of::<T>();
    if size > current {
        write_out(ptr, size, T::defaults());
        (ptr as *mut usize).write_unaligned(size);
    }
    check_in_size::<T>(size, &format!("{}.struct_size", T::NAME))?;
    write_out(ptr, size, T::defaults());
    Ok(())
}

/// Library major version.
pub const LOFI_VERSION_MAJOR: u32 = 0;
/// Library minor version.
pub const LOFI_VERSION_MINOR: u32 = 1;
/// Library patch version.
pub const LOFI_VERSION_PATCH: u32 = 0;
/// The header's version as one number, `MAJOR * 10000 + MINOR * 100 + PATCH` (0.1.0 is 100);
/// pass it to `lofi_check_version()`.
pub const LOFI_VERSION_NUMBER: u32 = 100;

const _: () = assert!(
    LOFI_VERSION_NUMBER == LOFI_VERSION_MAJOR * 10000 + LOFI_VERSION_MINOR * 100 + LOFI_VERSION_PATCH
        && LOFI_VERSION_MINOR < 100
        && LOFI_VERSION_PATCH < 100
);

/// The version of the library running (not of the header compiled against), as
/// `MAJOR * 10000 + MINOR * 100 + PATCH`.
#[no_mangle]
pub extern "C" fn lofi_version_number() -> u32 {
    LOFI_VERSION_NUMBER
}

/// Whether a library of version `library` serves a program built against lofi.h `header`:
/// the same major version and, before 1.0 (where every minor version is a new ABI, SONAME
/// `liblofi.so.0.MINOR`), the same minor version; from 1.0 a library minor at least the
/// header's. Patch versions never matter.
pub fn version_compatible(header: u32, library: u32) -> bool {
    let (h_major, h_minor) = (header / 10000, header / 100 % 100);
    let (l_major, l_minor) = (library / 10000, library / 100 % 100);
    h_major == l_major && if h_major == 0 { h_minor == l_minor } else { l_minor >= h_minor }
}

/// Checks that this library serves a program built against lofi.h version `header_version`
/// (pass `LOFI_VERSION_NUMBER`): `LOFI_STATUS_OK`, or `LOFI_STATUS_INVALID_ARGUMENT` with a
/// message naming both versions when the library is older than the header (or of another major
/// version; before 1.0, another minor version). Call it once at start-up, before anything else.
#[no_mangle]
pub extern "C" fn lofi_check_version(header_version: u32) -> lofi_status {
    guard("lofi_check_version", || {
        let v = |n: u32| format!("{}.{}.{}", n / 10000, n / 100 % 100, n % 100);
        if version_compatible(header_version, LOFI_VERSION_NUMBER) {
            Ok(())
        } else {
            Err(Error::invalid_argument(format!(
                "this program was built against lofi.h {} but runs with liblofi {}: install a liblofi \
                 compatible with {} (same major version{}), or rebuild the program",
                v(header_version),
                v(LOFI_VERSION_NUMBER),
                v(header_version),
                if header_version / 10000 == 0 {
                    " and, before 1.0, the same minor version"
                } else {
                    ", minor at least the header's"
                }
            )))
        }
    })
}

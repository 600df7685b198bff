//! The fork/exec path: closing tracked descriptors in a child without a lock
//! or an allocation.

//! [`CommandExt`] on `tokio::process::Command` (feature `tokio`): the same
//! setup, on the `std::process::Command` tokio builds its children from.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use super::hook::CommandExt;
use crate::table::FdTable;

/// tokio spawns through the `std::process::Command` inside its own
/// (`as_std_mut`), which runs the one `pre_exec` hook, or none, exactly as a
/// std command would; tokio adds nothing between `fork` and `exec`.
impl CommandExt for tokio::process::Command {
    fn close_tracked_fds(&mut self, table: &'static FdTable) -> &mut Self {
        self.as_std_mut().close_tracked_fds(table);
        self
    }

    fn close_tracked_fds_except(&mut self, table: &'static FdTable, keep: &[RawFd]) -> &mut Self {
        self.as_std_mut().close_tracked_fds_except(table, keep);
        self
    }

    fn pass_fd(&mut self, fd: BorrowedFd<'_>, child_fd: RawFd) -> io::Result<&mut Self> {
        self.as_std_mut().pass_fd(fd, child_fd)?;
        Ok(self)
    }

    fn close_other_fds(&mut self) -> &mut Self {
        self.as_std_mut().close_other_fds();
        self
    }
}

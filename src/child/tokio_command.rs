//! [`CommandExt`] on `tokio::process::Command` (feature `tokio`): the same
//! setup, on the `std::process::Command` tokio builds its children from.

use super::child_fds::ChildFds;
use super::hook::CommandExt;
use crate::table::FdTable;

/// tokio spawns through the `std::process::Command` inside its own
/// (`as_std_mut`), which runs the one `pre_exec` hook, or none, exactly as a
/// std command would; tokio adds nothing between `fork` and `exec`.
impl CommandExt for tokio::process::Command {
    fn child_fds(&mut self, fds: ChildFds) -> &mut Self {
        self.as_std_mut().child_fds(fds);
        self
    }

    fn close_tracked_fds(&mut self, table: &'static FdTable) -> &mut Self {
        self.as_std_mut().close_tracked_fds(table);
        self
    }
}

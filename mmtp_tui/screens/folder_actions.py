"""The user's folders from the main screen (new, rename, delete), all inboxes, search."""

from __future__ import annotations

from ..mailstore import (
    ALL_INBOXES,
    RESERVED,
    folder_name_problem,
)
from .dialogs import ConfirmScreen, PromptScreen
from .mail_view import MailView


class FolderActions(MailView):
    def action_new_folder(self, then_move: bool = False) -> None:
        def create(name: str | None) -> None:
            if name is None:
                return
            problem = folder_name_problem(name, self.store.user_folders(self.account_name))
            if problem:
                self.notify(problem, severity="error")
                return
            self.store.create_folder(self.account_name, name)
            self.notify(f"Folder {name} made.")
            if then_move:
                self.action_move_to(name)
            else:
                self.refresh_view()

        self.app.push_screen(PromptScreen("Name of the new folder:"), create)

    def _user_folder(self) -> str | None:
        if self.folder in RESERVED:
            self.notify(
                "Choose one of your own folders first (built-in ones stay).", severity="warning"
            )
            return None
        return self.folder

    def action_rename_folder(self) -> None:
        old = self._user_folder()
        if old is None:
            return

        def rename(new: str | None) -> None:
            if not new or new == old:
                return
            others = [f for f in self.store.user_folders(self.account_name) if f != old]
            problem = folder_name_problem(new, others)
            if problem:
                self.notify(problem, severity="error")
                return
            self.store.rename_folder(self.account_name, old, new)
            self.folder = new
            self.notify(f"Folder {old} is now {new}.")
            self.refresh_view()

        self.app.push_screen(PromptScreen(f"New name for {old}:", old), rename)

    def action_delete_folder(self) -> None:
        name = self._user_folder()
        if name is None:
            return

        def delete(yes: bool | None) -> None:
            if yes:
                count = self.store.delete_folder(self.account_name, name)
                self.folder = "Inbox"
                self.notify(f"Folder {name} deleted; {count} message(s) moved to Trash.")
                self.refresh_view()

        self.app.push_screen(
            ConfirmScreen(f"Delete the folder {name}? Its messages go to Trash."), delete
        )

    def action_all_inboxes(self) -> None:
        if len(self.app.settings.accounts) < 2:  # type: ignore[attr-defined]
            self.notify("There is one account: its Inbox is all there is.")
            return
        self.folder = ALL_INBOXES
        self.search_text = None
        self.refresh_view()

    def action_search(self) -> None:
        def run(text: str | None) -> None:
            if text:
                self.search_text = text
                self.refresh_view()

        self.app.push_screen(
            PromptScreen(
                "Search (words, from: to: subject: before:/after:YYYY-MM-DD has:attachment "
                "is:unread is:flagged):",
                self.search_text or "",
            ),
            run,
        )

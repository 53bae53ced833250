"""Starting a message from the main screen: new, from a draft, reply, reply all, forward."""

from __future__ import annotations

from .. import replying
from ..replying import Prefill
from .mail_view import MailView


class ReplyActions(MailView):
    def action_compose(self) -> None:
        from .compose import ComposeScreen

        self.needing_key(
            lambda: self.app.push_screen(
                ComposeScreen(self.session), lambda _: self.refresh_view()
            ),
            ": sending needs it",
        )

    def open_draft(self, draft_id: int) -> None:
        from .compose import ComposeScreen

        draft = self.store.draft(draft_id)
        if draft is not None:
            self.app.push_screen(
                ComposeScreen(self.session, outgoing=draft.outgoing, draft_id=draft.id),
                lambda _: self.refresh_view(),
            )

    def compose_from(self, prefill: Prefill) -> None:
        self.needing_key(lambda: self._compose_from(prefill), ": sending needs it")

    def _compose_from(self, prefill: Prefill) -> None:
        from .compose import ComposeScreen

        self.app.push_screen(
            ComposeScreen(
                self.session,
                to=prefill.to,
                subject=prefill.subject,
                body=prefill.body,
                type=prefill.type,
                in_reply_to=prefill.in_reply_to,
                references=prefill.references,
                attachments=prefill.attachments,
            ),
            lambda _: self.refresh_view(),
        )

    def _reply(self, *, quoted: bool, everyone: bool = False) -> None:
        message = self.selected()
        if message is None:
            self.notify("Select a message to reply to.", severity="warning")
            return
        if message.account != self.account_name:
            self.notify(
                f"That message is in the account {message.account}: switch to it (A) to reply.",
                severity="warning",
            )
            return
        if everyone:
            self.compose_from(replying.reply_all(message, self.session.address, quoted=quoted))
        else:
            self.compose_from(replying.reply(message, quoted=quoted))

    def action_reply_all(self) -> None:
        self._reply(quoted=False, everyone=True)

    def action_reply(self) -> None:
        self._reply(quoted=False)

    def action_reply_quote(self) -> None:
        self._reply(quoted=True)

    def action_forward(self) -> None:
        message = self.selected()
        if message is None:
            self.notify("Select a message to forward.", severity="warning")
            return
        self.compose_from(replying.forward(message))

"""The people panel: the contact lists with their sizes, a person's opt-outs, and their rights:
take a contact off a list or out of the contacts, withdraw an opt-out (a new opt-in, audited),
erase every trace of an address (GDPR art. 17).

Nothing is removed unless the confirmation box is ticked (the command line's ``--yes``).

Example (in a notebook cell)::

    import newsletter_kit as nk
    nk.PeoplePanel(nk.open_store())
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from .. import audience, erasure
from ..errors import ValidationError
from ..store import Store
from .common import Panel, button, catch_errors, heading, hint, panel_style, text


class PeoplePanel(Panel):
    """Lists and sizes; look up an address; remove, withdraw an opt-out, erase.

    Attributes for code and tests: ``lists`` (HTML table), ``address``, ``list_choice``,
    ``confirm``, ``lookup_button``, ``remove_button``, ``withdraw_button``, ``erase_button``,
    ``import_path``, ``import_list``, ``import_button``, ``last_import``,
    ``found`` (HTML: what the store holds about the address), ``last_erasure`` (the dict
    :func:`~newsletter_kit.erasure.erase_address` returned), ``message``.
    """

    def __init__(self, store: Store | None = None):
        super().__init__(store)
        self.last_erasure: dict[str, Any] | None = None
        self.lists = widgets.HTML("")
        self.import_path = text("CSV file", placeholder="data/contacts.csv")
        self.import_list = text("Into the list", value=audience.ALL_LIST)
        self.import_button = button("Import contacts", self.import_csv, icon="upload",
                                    tooltip="Column `email`; the other columns become template fields")
        self.address = text("Address", placeholder="ann@example.org")
        self.list_choice = widgets.Dropdown(options=[("every list", "")], description="From",
                                            style={"description_width": "190px"},
                                            layout=widgets.Layout(width="520px"))
        self.lookup_button = button("Look up", self.lookup, icon="search")
        self.found = widgets.HTML("")
        self.confirm = widgets.Checkbox(value=False, indent=False, description="Yes, I mean it")
        self.remove_button = button("Remove contact", self.remove, icon="user-times",
                                    tooltip="Off the chosen list, or out of the contacts (deliveries stay)")
        self.withdraw_button = button("Withdraw opt-outs", self.withdraw, icon="undo",
                                      tooltip="A new opt-in: every opt-out of the address goes (audited)")
        self.erase_button = button("Erase every trace", self.erase, style="danger", icon="eraser",
                                   tooltip="Right to erasure: cannot be undone")
        self.field_widgets = {"email": self.address, "list": self.list_choice}
        self.last_import: audience.ImportReport | None = None
        self.widget = widgets.VBox([
            panel_style(), heading("Contact lists"), self.lists,
            widgets.HBox([self.import_path, self.import_button]), self.import_list,
            heading("A person"), widgets.HBox([self.address, self.lookup_button]), self.found,
            self.list_choice,
            widgets.HBox([self.remove_button, self.withdraw_button, self.erase_button, self.confirm]),
            hint("<b>Erase</b> removes the contact, its opt-outs and suppression, anonymises its "
                 "deliveries and bounces (the statistics keep their counts) and scrubs the store "
                 "file; a keyed hash keeps the address from being imported again."),
            self.message,
        ], layout=widgets.Layout(max_width="900px"))
        self.widget.add_class("nk-people-panel")
        self.widget.add_class("nk-panel")
        self.refresh()

    @catch_errors
    def refresh(self) -> None:
        """Read the lists and their sizes again."""
        sizes = audience.list_sizes(self.store)
        rows = "".join(f"<tr><td>{html.escape(s['list'])}</td><td style='text-align:right'>{s['contacts']:,}</td></tr>"
                       for s in sizes)
        self.lists.value = ("<table class='nk-lists'><tr><th>List</th><th>Contacts</th></tr>" + rows + "</table>"
                            if sizes else "<i>no contacts yet</i>")
        keep = self.list_choice.value
        self.list_choice.options = [("every list", ""), *[(s["list"], s["list"]) for s in sizes]]
        self.list_choice.value = keep if keep in [v for _, v in self.list_choice.options] else ""

    @catch_errors
    def import_csv(self, _button: Any = None) -> audience.ImportReport:
        """Import the CSV file named under "CSV file" into the list named under "Into the list"."""
        self.clear_message()
        path = self.import_path.value.strip()
        if not path:
            raise ValidationError("name the CSV file to import", "email")
        report = self.last_import = audience.import_contacts(self.store, path, self.import_list.value.strip()
                                                             or audience.ALL_LIST)
        self.refresh()
        skipped = [f"skipped {p}" for p in report.problems[:5]]
        self.show_lines([("ok", f"Contacts: {report.summary()}"), *[("warning", line) for line in skipped]])
        return report

    @catch_errors
    def lookup(self, _button: Any = None) -> dict[str, Any]:
        """What the store holds about the address: lists, opt-outs, whether it was erased."""
        self.clear_message()
        email = self._address()
        lists = [r[0] for r in self.store.conn.execute(
            "SELECT l.name FROM list_members m JOIN lists l ON l.id = m.list_id JOIN contacts c "
            "ON c.id = m.contact_id WHERE c.email = ? ORDER BY l.name", (email,))]
        opt_outs = audience.list_unsubscribes(self.store, email)
        erased = erasure.is_erased(self.store, email)
        words = [f"on the lists: {', '.join(lists)}" if lists else "not a contact"]
        if opt_outs:
            words.append("opted out of " + ", ".join(o["campaign"] or "everything" for o in opt_outs))
        if erased:
            words.append("erased (it cannot be imported again)")
        self.found.value = f"<div style='margin-left:190px'>{html.escape(email)}: {html.escape('; '.join(words))}</div>"
        return {"lists": lists, "opt_outs": opt_outs, "erased": erased}

    @catch_errors
    def remove(self, _button: Any = None) -> str:
        """Take the address off the chosen list, or out of the contacts."""
        self.clear_message()
        email = self._confirmed()
        done = audience.remove_contact(self.store, email, self.list_choice.value or None)
        self._done(done)
        return done

    @catch_errors
    def withdraw(self, _button: Any = None) -> int:
        """Withdraw every opt-out of the address (written to the audit trail)."""
        self.clear_message()
        email = self._confirmed()
        count = audience.remove_unsubscribe(self.store, email, every=True, by="people panel")
        self._done(f"{count} opt-out(s) of {email} withdrawn (kept in the audit trail).")
        return count

    @catch_errors
    def erase(self, _button: Any = None) -> dict[str, Any]:
        """Erase every trace of the address from the store (right to erasure)."""
        self.clear_message()
        email = self._confirmed()
        done = self.last_erasure = erasure.erase_address(self.store, email)
        self._done(f"{email} erased: {done['deliveries']} deliveries and {done['bounces']} bounces anonymised "
                   f"as {done['placeholder']}; {done['contacts']} contact, {done['unsubscribes']} opt-outs, "
                   f"{done['suppressions']} suppression removed.")
        return done

    def _address(self) -> str:
        from ..addresses import normalize_address

        try:
            return normalize_address(self.address.value)
        except ValidationError as exc:
            raise ValidationError(str(exc), "email") from None

    def _confirmed(self) -> str:
        email = self._address()
        if not self.confirm.value:
            raise ValidationError("tick 'Yes, I mean it' first: nothing was removed", "email")
        return email

    def _done(self, text_: str) -> None:
        self.confirm.value = False
        self.refresh()
        self.lookup()
        self.show_ok(text_)


__all__ = ["PeoplePanel"]

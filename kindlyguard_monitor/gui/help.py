"""Plain words for a new user (issue 14 item 5): the Help page, what each threat type
means, and a tooltip on every number the main window shows.

Everything here is our own text (never a threat's), so the Help page may be rich
text; it opens no links. The number tooltips are set by attribute, like
gui/keyboard.py's names, so main_window.py keeps its own layout.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

# What each threat type means, in a sentence a non-specialist can act on.
TYPE_MEANING = {
    "UnicodeInvisible": "Invisible characters hide words from you while the AI still reads them.",
    "UnicodeBiDi": "Direction-changing characters make text read differently from what it does "
                   "(\"invoice_exe.pdf\" that is really a .exe).",
    "UnicodeHomoglyph": "Look-alike letters from another alphabet imitate a trusted name (\"аpple.com\").",
    "InjectionAttempt": "Text that tries to give the AI new instructions (\"ignore previous instructions\").",
    "PathTraversal": "A file path that climbs out of the folder a tool may use (\"../../etc/passwd\").",
    "SuspiciousPattern": "Something that looks like an attack, such as shell commands or SQL in a tool argument.",
    "RateLimitViolation": "A tool or session sent far more requests than normal.",
    "Unknown": "A threat type this version of the monitor does not know.",
}

# attribute path on the main window -> tooltip (a dict attribute takes a key after the dot)
NUMBER_TIPS = {
    "counter_labels.total": "Threats that arrived since the monitor started (the ones restored from "
                            "the history are listed but not counted here).",
    "counter_labels.blocked": "Of this session's threats, the ones the Shield blocked: they never reached "
                              "your AI tools.",
    "counter_labels.restored": "Threats from before this session, listed again from the history at start: "
                               "dated, muted and kept below this session's rows. Not counted in this "
                               "session's numbers.",
    "unseen_label": "Threats you have not looked at yet (this session's and earlier ones): open a row, "
                    "or mark all as seen (Ctrl+Shift+A). The tray's alert icon stays until none is left.",
    "counter_labels.Low": "Threats of Low severity since the monitor started.",
    "counter_labels.Medium": "Threats of Medium severity since the monitor started.",
    "counter_labels.High": "Threats of High severity since the monitor started.",
    "counter_labels.Critical": "Threats of Critical severity since the monitor started. A Critical "
                               "threat that was not blocked needs you.",
    "counter_labels.rate": "Threats arriving per second, over the last second.",
    "counter_labels.missed": "Threats the monitor could not read in time: the Shield's buffer "
                             "overwrote them first. They were still handled by the Shield.",
    "counter_labels.corrupt": "Threats that arrived damaged (failed their checksum) and were skipped.",
    "latency_label": "How quickly threats reach the monitor from the Shield: half arrive faster than "
                     "p50, 99 in 100 faster than p99.",
    "badge": "How the monitor is connected to the Shield: Shared memory (fastest), WebSocket (the "
             "fallback) or Disconnected (it keeps retrying). \"Protection OFF\" means the Shield is "
             "not blocking threats.",
    "history_label": "Every threat kept in the threat history (all sessions), and the space its files "
                     "take on disk now (File › History… searches it).",
    "shield_label": "What the Shield itself reports: whether protection is on, and how many threats "
                    "it has blocked since the Shield started (its own counter: not this session's, "
                    "and it counts threats the monitor may never have been sent).",
}

HELP_HTML = """
<h2>KindlyGuard Monitor</h2>
<p>KindlyGuard Shield checks what your AI tools send and receive (MCP traffic) for attacks.
This window shows every threat the Shield finds, the moment it finds it.</p>

<h3>What you see</h3>
<ul>
<li><b>The badge</b> (top left): how the monitor hears from the Shield. <i>Shared memory</i> is the
normal, fastest way; <i>WebSocket</i> is the fallback; <i>Disconnected</i> means the Shield is not
running or not reachable (the monitor keeps trying). <b>Protection OFF</b> means the Shield is only
watching, not blocking.</li>
<li><b>The numbers</b> below it say what they count: <i>This session</i> is the threats since the
monitor started; <i>Before this session</i> the earlier ones listed again from the history;
<i>Kept in history</i> (bottom) every threat stored, with its size on disk; <i>Shield reported: N
blocked since it started</i> is the Shield's own counter, as it last told the monitor. Hover over any number to see what it counts.</li>
<li><b>The feed</b>: one row per threat, newest first. <i>Blocked: Yes</i> means the Shield stopped
it; <i>No</i> means it was reported but let through. Rows from before this session show their
date, are greyed and stay below this session's rows, however you sort.</li>
<li><b>Unseen</b>: a threat you have not looked at yet is <b>bold with a dot</b> (●) before its
time. Selecting it marks it seen; <i>Mark all as seen</i> (the button at the top right, File, the tray
menu, or Ctrl+Shift+A) marks every threat seen. The count is in the window title and the tray's
tooltip, and the tray's red alert icon turns back to normal once nothing is unseen. The history
keeps what you have seen, so it stays seen after a restart (with the history off, for this session
only).</li>
<li><b>Details</b>: the selected threat in full. Hidden or direction-changing characters are shown
as codes such as ⟨U+202E⟩, so you see exactly what was sent. Internals (event numbers, the
transport) are under <i>Technical details</i>.</li>
<li><b>Latency</b>: how quickly threats reach you. Only of interest when something seems slow.</li>
</ul>

<h3>What to do about a threat</h3>
<ul>
<li><b>Blocked</b>: nothing is needed. Look at the source if the same one keeps coming back: a tool
or a document you use may be compromised.</li>
<li><b>Not blocked, Low or Medium</b>: read the details. Often a false alarm; if not, stop using that
tool or document until you know more.</li>
<li><b>Not blocked, High or Critical</b>: stop what the AI is doing, check what it did with the text
shown (files written, commands run, messages sent) and remove the tool or server named in
<i>Source</i> until it is fixed. If protection was off, turn it back on.</li>
<li>Too many notifications from one source? Select one of its threats and choose <i>Mute
notifications from this source</i>; its threats are still shown and kept.</li>
</ul>

<h3>Protection</h3>
<p>The tray menu (and File) has <i>Turn protection off…</i>. Turning it off asks first and is shown
everywhere (the badge, a black tray icon, a notification) until the Shield confirms it is back on.
In the fleet view (<i>kgmon --fleet</i>) protection is switched on each workstation, not from here.</p>

<h3>Notifications</h3>
<p>At most one every 20 seconds (Settings); what arrives in between is summed up
(\"12 new threats, 3 critical, all blocked\"). Nothing pops up while your desktop's do-not-disturb is on.
Links in threat text are written <i>hxxp[:]//example[.]com</i> so they cannot be clicked by mistake.</p>

<h3>Keyboard</h3>
<table cellspacing="4">
<tr><td><b>Ctrl+F</b></td><td>filter the feed</td></tr>
<tr><td><b>↑ ↓, Enter</b></td><td>move through the feed; read the selected threat</td></tr>
<tr><td><b>Esc</b></td><td>clear the filter, or close the window</td></tr>
<tr><td><b>Ctrl+W</b></td><td>close the window (the monitor stays in the tray)</td></tr>
<tr><td><b>Ctrl+Shift+A</b></td><td>mark all threats as seen</td></tr>
<tr><td><b>Ctrl+H</b></td><td>History (every threat kept, searchable, exportable)</td></tr>
<tr><td><b>Ctrl+,</b></td><td>Settings (colours: System, Light, Dark)</td></tr>
<tr><td><b>F1</b></td><td>this page</td></tr>
<tr><td><b>Ctrl+Q</b></td><td>quit</td></tr>
</table>

<h3>Threat types</h3>
<dl>
""" + "".join(f"<dt><b>{name}</b></dt><dd>{text}</dd>" for name, text in TYPE_MEANING.items()) + """
</dl>
"""


def explain_numbers(window) -> None:
    """A tooltip on every number of the main window (what it counts), by attribute."""
    for path, tip in NUMBER_TIPS.items():
        obj = window
        for part in path.split("."):
            obj = obj.get(part) if isinstance(obj, dict) else getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, QWidget) and not obj.toolTip():
            obj.setToolTip(tip)


class HelpDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("KindlyGuard Monitor Help")
        self.browser = QTextBrowser(self)
        self.browser.setOpenLinks(False)
        self.browser.setOpenExternalLinks(False)
        self.browser.setHtml(HELP_HTML)
        self.browser.setAccessibleName("Help: what the monitor shows and what to do about a threat")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
        self.resize(620, 640)
        self.setWindowModality(Qt.WindowModality.NonModal)

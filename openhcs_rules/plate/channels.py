"""Channel names that are unique from discovery on, even once made safe for table columns.

Why at discovery: channel names become column names (``mean_intensity_<name>``) after every step of a well
has run, so two channels called alike ("FITC_05" four times in a MetaXpress direct transfer, or
"Alexa 488" and "Alexa_488") used to fail each well at its very end. Renaming is deterministic and uses,
in order, what the instrument wrote that tells the channels apart (a projection method, a wavelength),
then the channel index, which always differs. Every renamed channel gets a warning, so nothing is hidden.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openhcs_rules.plate.model import ChannelInfo

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")

#: per channel index, the distinguishing words the instrument wrote, most telling first (None: not written)
Qualifiers = Mapping[int, Sequence[str | None]]


def sanitize_channel_name(name: str) -> str:
    """'Texas Red' -> 'Texas_Red': the form a name takes as a CSV/pandas/SQL column (as measurement does)."""
    return _UNSAFE.sub("_", str(name).strip())


def channel_key(name: str) -> str:
    """What two names must not share: the sanitised form, case-folded (SQL and some tools ignore case)."""
    return sanitize_channel_name(name).casefold()


def unique_channel_names(
    channels: Sequence[ChannelInfo], warnings: list[str], qualifiers: Qualifiers | None = None
) -> list[ChannelInfo]:
    """``channels`` with every clashing (or empty) name renamed ``"<name> <qualifier>"``; a warning each.

    All channels of a clashing group are renamed (none is preferred over the others). Each takes its first
    qualifier that no other member of the group shares and that makes no new clash; the last resort is its
    index, ``ch<index>``, unique by construction. Names that do not clash are left exactly as written.
    """
    qualifiers = qualifiers or {}
    groups: dict[str, list[ChannelInfo]] = {}
    for channel in channels:
        groups.setdefault(channel_key(channel.name), []).append(channel)
    taken = {key for key, group in groups.items() if len(group) == 1 and key}
    renamed: dict[int, ChannelInfo] = {}
    for key, group in groups.items():
        if len(group) == 1 and key:
            continue
        for channel in group:
            peers = [c for c in group if c is not channel]
            new_name, qualifier = _distinct_name(channel, _own_words(channel, peers, qualifiers), taken)
            taken.add(channel_key(new_name))
            renamed[channel.index] = replace(channel, name=new_name)
            warnings.append(_rename_warning(channel, peers, new_name, qualifier))
    return [renamed.get(c.index, c) for c in channels]


def _own_words(channel: ChannelInfo, peers: list[ChannelInfo], qualifiers: Qualifiers) -> list[str]:
    """The channel's qualifiers that no peer also has (a shared one would not tell them apart)."""
    shared = {channel_key(q) for p in peers for q in qualifiers.get(p.index, ()) if q}
    return [q for q in qualifiers.get(channel.index, ()) if q and channel_key(q) not in shared]


def _distinct_name(channel: ChannelInfo, words: list[str], taken: set[str]) -> tuple[str, str | None]:
    """``(new name, the instrument's word used or None for the index)``; never a name already taken."""
    base = channel.name.strip()
    for word in words:
        candidate = f"{base} {word}".strip()
        if channel_key(candidate) not in taken:
            return candidate, word
    candidate, suffix = f"{base} ch{channel.index}".strip(), 1
    while channel_key(candidate) in taken:  # only if another channel is literally called "<base> ch<index>"
        suffix += 1
        candidate = f"{base} ch{channel.index}_{suffix}".strip()
    return candidate, None


def _rename_warning(channel: ChannelInfo, peers: list[ChannelInfo], new_name: str, word: str | None) -> str:
    if not channel_key(channel.name):
        why = f"channel {channel.index} has no usable name ({channel.name!r})"
    else:
        others = ", ".join(f"{p.index} ({p.name!r})" for p in peers)
        why = (
            f"channel {channel.index} is named {channel.name!r} like channel(s) {others} once names are made "
            "safe for table columns"
        )
    how = f"added {word!r}, which the instrument wrote for it" if word else "added its channel index"
    return f"{why}: renamed {new_name!r} ({how})"

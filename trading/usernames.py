"""The skeleton of a username: what it looks like, so look-alike names can be told apart.

Two usernames with the same skeleton read the same on the leaderboard and the admin pages
(``bob`` and ``Bob``, Latin ``alice`` and the same name with a Cyrillic U+0430 for its ``a``,
``paypal`` and ``paypa1``), so only one user may hold each (``UsernameSkeleton``). The skeleton is

1. NFKC, case folding, NFKC again: compatibility forms (fullwidth or mathematical bold letters) and case
   do not make a name different;
2. every character replaced by the prototype of its confusable set, from Unicode's confusables
   data as the ``confusable_homoglyphs`` package ships it;
3. NFKC and case folding again, since a prototype may be an upper-case or compatibility form.

The package's table lists, for a prototype, the characters that look like it and, for each of
those, the prototype alone; a pair of characters that only look like each other lists one
another, and the smaller one is taken. Prototypes are single characters here: the table's
multi-character ones (``rn`` for ``m``) are left out, so such names stay distinct. Following
chains of look-alikes instead (union of every listed pair) would merge most of the Latin
alphabet (``r``, ``t``, ``u``, ``y`` and ``z`` end up in one set), refusing ordinary names.
"""

from __future__ import annotations

import unicodedata
from functools import cache

from confusable_homoglyphs.confusables import confusables_data

# Marks the table puts around right-to-left characters; they are not part of the character.
_DIRECTION_MARKS = str.maketrans("", "", "\u200e\u200f")


@cache
def _prototypes() -> dict[str, str]:
    listed: dict[str, list[str]] = {}
    for character, homoglyphs in confusables_data.items():
        listed[character.translate(_DIRECTION_MARKS)] = [
            entry["c"].translate(_DIRECTION_MARKS) for entry in homoglyphs
        ]
    prototypes: dict[str, str] = {}
    for character, looks_like in listed.items():
        if len(character) != 1 or len(looks_like) != 1 or len(looks_like[0]) != 1:
            continue  # a prototype itself, or a multi-character entry
        target = looks_like[0]
        # A prototype lists all its look-alikes; a pair that only look like each other meet at
        # the smaller character.
        prototypes[character] = target if len(listed.get(target, ())) > 1 else min(character, target)
    return prototypes


def _folded(text: str) -> str:
    # Case folding can leave a string that is no longer in NFKC (Greek with diacritics): normalise
    # on both sides of it so that a name and its upper-case form fold to the same characters.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


def username_skeleton(username: str) -> str:
    prototypes = _prototypes()
    return _folded("".join(prototypes.get(character, character) for character in _folded(username)))

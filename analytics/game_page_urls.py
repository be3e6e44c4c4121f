"""A game's own page, at the site's root (config/urls.py): it reads the game's leaderboard, so it is
analytics'; the other game pages are trading's (trading/page_urls.py)."""

from django.urls import URLPattern, path

from analytics import game_pages

urlpatterns: list[URLPattern] = [
    path("games/<uuid:game_id>", game_pages.game_page, name="game_page"),
]

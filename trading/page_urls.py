"""Routes of the server-rendered pages (session login, CSRF on every form).

The password views are Django's own; their URL names are the ones those views and their e-mail
template reverse (``password_change_done``, ``password_reset_confirm``...).
"""

from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, path

from trading import game_views, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.home, name="home"),
    path("signup", views.signup, name="signup"),
    path("login", views.ThrottledLoginView.as_view(), name="login"),
    path("logout", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password/change",
        auth_views.PasswordChangeView.as_view(template_name="registration/site_password_change_form.html"),
        name="password_change",
    ),
    path(
        "password/change/done",
        auth_views.PasswordChangeDoneView.as_view(
            template_name="registration/site_password_change_done.html"
        ),
        name="password_change_done",
    ),
    path("password/reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path("password/reset/done/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/complete/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("account/select", views.account_select, name="account_select"),
    path("keys", views.api_keys, name="keys"),
    path("keys/<str:key_id>/revoke", views.api_key_revoke, name="key_revoke"),
    # Games (README, Running a game); a game's own page is analytics' (analytics/game_page_urls.py).
    path("games", game_views.games_browse, name="games_browse"),
    path("games/new", game_views.game_create, name="game_create"),
    path("games/join/<str:invite_code>", game_views.game_invite, name="game_invite"),
    path("games/<uuid:game_id>/join", game_views.game_join, name="game_join"),
    path("games/<uuid:game_id>/manage", game_views.game_manage, name="game_manage"),
    path(
        "games/<uuid:game_id>/players/<str:username>/remove",
        game_views.game_player_remove,
        name="game_player_remove",
    ),
    path("games/<uuid:game_id>/end", game_views.game_end, name="game_end"),
    path("games/<uuid:game_id>/announce", game_views.game_announce, name="game_announce"),
]

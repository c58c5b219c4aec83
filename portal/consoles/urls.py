from django.urls import path

from portal.consoles import views

urlpatterns = [
    path("instances/<uuid:uuid>/console/<str:kind>/ticket", views.console_ticket,
         name="console-ticket"),
    path("instances/<uuid:uuid>/console/vnc/", views.vnc_window, name="console-vnc-window"),
    path("consoles/", views.session_list, name="console-sessions"),
    path("consoles/<str:session_id>/end", views.session_end, name="console-session-end"),
]

from django.urls import path

from bmp import views

urlpatterns = [
    path("links/", views.links),
    path("links/<str:token>/", views.link_detail),
    path("members/<int:user_id>/", views.member_detail),
    path("health/", views.health),
    path("health/detailed/", views.health_detailed),
]

handler404 = "bmp.views.not_found"
handler500 = "bmp.views.server_error"

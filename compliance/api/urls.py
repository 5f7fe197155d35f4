"""``/api/v1/...`` routes (included under ``api/`` by the site's URL map)."""

from django.urls import path

from . import views

urlpatterns = [
    path("v1/institutions", views.InstitutionListView.as_view(), name="institution-list"),
    path("v1/subjects/lookup", views.SubjectLookupView.as_view(), name="subject-lookup"),
    path("v1/forget-requests", views.ForgetRequestListView.as_view(), name="forget-request-list"),
    path("v1/forget-requests/<uuid:pk>", views.ForgetRequestDetailView.as_view(),
         name="forget-request-detail"),
    path("v1/forget-requests/<uuid:pk>/review", views.ReviewView.as_view(), name="forget-request-review"),
    path("v1/forget-requests/<uuid:pk>/approve", views.ApproveView.as_view(), name="forget-request-approve"),
    path("v1/forget-requests/<uuid:pk>/refuse", views.RefuseView.as_view(), name="forget-request-refuse"),
    path("v1/forget-requests/<uuid:pk>/extend", views.ExtendView.as_view(), name="forget-request-extend"),
    path("v1/forget-requests/<uuid:pk>/cancel", views.CancelView.as_view(), name="forget-request-cancel"),
    path("v1/audit-events", views.AuditEventListView.as_view(), name="audit-event-list"),
]

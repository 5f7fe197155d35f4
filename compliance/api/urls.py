"""``/api/v1/...`` routes (included under ``api/`` by the site's URL map)."""

from django.urls import path

from . import pipeline, views

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
    path("v1/forget-requests/<uuid:pk>/reschedule", views.RescheduleView.as_view(),
         name="forget-request-reschedule"),
    path("v1/audit-events", views.AuditEventListView.as_view(), name="audit-event-list"),
    # unlearning pipeline
    path("v1/jobs", pipeline.JobListView.as_view(), name="job-list"),
    path("v1/jobs/<uuid:pk>", pipeline.JobDetailView.as_view(), name="job-detail"),
    path("v1/jobs/<uuid:pk>/cancel", pipeline.JobCancelView.as_view(), name="job-cancel"),
    path("v1/deployments", pipeline.DeploymentListView.as_view(), name="deployment-list"),
    path("v1/deployments/<slug:name>/versions", pipeline.VersionListView.as_view(), name="version-list"),
    path("v1/deployments/<slug:name>/rollback", pipeline.RollbackView.as_view(), name="deployment-rollback"),
    path("v1/verification-reports/<uuid:pk>", pipeline.VerificationReportView.as_view(),
         name="verification-report-detail"),
    path("v1/forget-requests/<uuid:pk>/certificate", pipeline.RequestCertificateView.as_view(),
         name="forget-request-certificate"),
    path("v1/forget-requests/<uuid:pk>/certificate.pdf", pipeline.RequestCertificatePdfView.as_view(),
         name="forget-request-certificate-pdf"),
    path("v1/certificates/<uuid:pk>/verify", pipeline.CertificateVerifyView.as_view(),
         name="certificate-verify"),
    path("v1/public-keys", pipeline.PublicKeyListView.as_view(), name="public-key-list"),
    path("v1/inference/screen", pipeline.ScreenView.as_view(), name="inference-screen"),
]

# reconcile every 5 minutes, as the scheduler's account, with an OIDC token for the
# function's own URI (Cloud Run checks the audience).
resource "google_cloud_scheduler_job" "reconcile" {
  count       = local.phase2 ? 1 : 0
  project     = var.project_id
  region      = var.region
  name        = "${var.name_prefix}-reconcile"
  description = "Release Governor: finish what deliveries left undone (reconcile)."
  schedule    = "*/5 * * * *"
  time_zone   = "Etc/UTC"
  # The whole of reconcile's time budget (its function timeout), and a margin.
  attempt_deadline = "${var.reconcile_timeout_seconds + 30}s"

  retry_config {
    retry_count = 0 # the next run is 5 minutes away
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.governor["reconcile"].service_config[0].uri
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.governor["reconcile"].service_config[0].uri
    }
  }

  depends_on = [google_project_service.apis, google_cloud_run_v2_service_iam_member.reconcile_invoker]
}

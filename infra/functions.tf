# The HTTP functions (gen2), created in phase 2 only: a function whose secret has no
# version yet cannot start, and the App (with its key and webhook secret) is created
# from the phase 1 outputs. See infra/README.md.

locals {
  functions = {
    github_webhook = { timeout_seconds = 60, public = true }
    decision_page  = { timeout_seconds = 30, public = true }
    reconcile      = { timeout_seconds = var.reconcile_timeout_seconds, public = false }
  }
}

resource "google_cloudfunctions2_function" "governor" {
  #checkov:skip=CKV_GCP_124:ALLOW_ALL ingress is required: GitHub delivers webhooks and browsers open decision pages from the internet. reconcile is closed by IAM instead (only the scheduler's account has roles/run.invoker on it).
  for_each    = local.phase2 ? local.functions : {}
  project     = var.project_id
  location    = var.region
  name        = local.function_names[each.key]
  description = "Release Governor: ${each.key}"

  build_config {
    runtime         = "python311"
    entry_point     = each.key # the function of that name in main.py (functions/main.py)
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email          = google_service_account.functions.email
    timeout_seconds                = each.value.timeout_seconds
    available_memory               = "512Mi"
    max_instance_count             = var.max_instances
    min_instance_count             = 0
    ingress_settings               = "ALLOW_ALL" # GitHub and browsers reach two of them; reconcile is closed by IAM
    all_traffic_on_latest_revision = true
    environment_variables          = local.function_env

    secret_environment_variables {
      key        = "GOVERNOR_WEBHOOK_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.governor["webhook_secret"].secret_id
      version    = "latest"
    }

    secret_environment_variables {
      key        = "GOVERNOR_LINK_SECRET"
      project_id = var.project_id
      secret     = google_secret_manager_secret.governor["link_secret"].secret_id
      version    = "latest"
    }

    # The private key as a file: GOVERNOR_GITHUB_PRIVATE_KEY_PATH points at it.
    secret_volumes {
      mount_path = local.private_key_dir
      project_id = var.project_id
      secret     = google_secret_manager_secret.governor["github_private_key"].secret_id
      versions {
        version = "latest"
        path    = local.private_key_file
      }
    }
  }

  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.functions_access,
    google_storage_bucket_iam_member.functions_state,
    google_project_iam_member.build_roles,
    google_storage_bucket_iam_member.build_source,
  ]
}

# Invokers: roles/run.invoker on each function's Cloud Run service (gen2 functions are
# authorised by Cloud Run, not by roles/cloudfunctions.invoker).
resource "google_cloud_run_v2_service_iam_member" "public_invoker" {
  # Public on purpose: GitHub must reach github_webhook and a browser decision_page; both
  # authenticate every request themselves (the webhook signature, the signed page link).
  for_each = { for name, fn in local.functions : name => fn if local.phase2 && fn.public }
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.governor[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "reconcile_invoker" {
  count    = local.phase2 ? 1 : 0
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.governor["reconcile"].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

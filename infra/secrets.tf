# The three secrets. Terraform creates them empty; their values are added by hand with
# `gcloud secrets versions add` (infra/README.md, phase 2), so they never enter the state.
locals {
  secrets = {
    webhook_secret     = "${var.name_prefix}-webhook-secret"
    github_private_key = "${var.name_prefix}-github-private-key"
    link_secret        = "${var.name_prefix}-link-secret"
  }
}

resource "google_secret_manager_secret" "governor" {
  for_each  = local.secrets
  project   = var.project_id
  secret_id = each.value

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

# Only the functions' account may read them, secret by secret.
resource "google_secret_manager_secret_iam_member" "functions_access" {
  for_each  = local.secrets
  project   = var.project_id
  secret_id = google_secret_manager_secret.governor[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.functions.email}"
}

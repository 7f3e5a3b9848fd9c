# APIs and buckets. Nothing here grants access; see iam.tf.

resource "google_project_service" "apis" {
  for_each = toset([
    "artifactregistry.googleapis.com", # images of the functions
    "cloudbuild.googleapis.com",       # builds the functions from the source zip
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com", # reconcile every 5 minutes
    "iam.googleapis.com",
    "logging.googleapis.com",
    "run.googleapis.com", # gen2 functions are Cloud Run services
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# The governor's state: every key is written with a conditional write (docs/storage.md).
resource "google_storage_bucket" "state" {
  #checkov:skip=CKV_GCP_62:Access logging would write a second bucket per request of every delivery; the functions log each delivery to Cloud Logging, and Data Access audit logs can be enabled per project instead.
  #checkov:skip=CKV_GCP_78:Versioning off on purpose: the store's generations are its own concurrency control, and old versions of claims and state are never read; object deletion is limited to deliveries/ by the lifecycle rule below.
  name                        = local.state_bucket_name
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  versioning {
    enabled = false
  }

  # Delivery claims (deliveries/<identity>.json) only answer duplicates of a delivery;
  # GitHub redelivers for up to 3 days. Decisions and runs live under repos/<id>/ next to
  # the release state, which must never expire, so no prefix rule can expire them safely.
  lifecycle_rule {
    condition {
      age            = var.retention_days
      matches_prefix = ["deliveries/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# The function source zips (`make package`), read by Cloud Build.
resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only the build input zips, read by Cloud Build; access logging adds nothing an audit log does not.
  #checkov:skip=CKV_GCP_78:Each upload is a new object named by its content hash; versioning would keep nothing more.
  name                        = "${local.state_bucket_name}-source"
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_object" "source" {
  # The name carries the content hash, so a new zip redeploys the functions.
  name   = "function-source-${filemd5(var.source_zip)}.zip"
  bucket = google_storage_bucket.source.name
  source = var.source_zip
}

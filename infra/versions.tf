# Terraform and provider versions. Terraform resolves the exact provider build on
# `terraform init` and records it in .terraform.lock.hcl: commit that file once created.
terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.14"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

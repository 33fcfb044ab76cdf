# Reference Bradley-Terry estimates from BradleyTerry2 (Turner & Firth) and from an
# independent R transcription of sirt::btm's published algorithm (Robitzsch), for the
# decision files in tests/fixtures/bt_reference/*.csv.
#
#   Rscript scripts/bt_reference.R tests/fixtures/bt_reference
#
# Writes <name>.reference.json next to each CSV. Abilities are reported on the sum-to-zero
# scale: BTm fixes the first essay at 0, so theta = lambda - mean(lambda) and the
# covariance is projected, V_theta = P V_lambda P with P = I - 11'/n (the reference essay
# padded with zeros). Needs the Debian packages r-cran-bradleyterry2 and r-cran-jsonlite.

suppressPackageStartupMessages({
  library(BradleyTerry2)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
folder <- if (length(args) > 0) args[1] else "tests/fixtures/bt_reference"

sum_to_zero <- function(coefs, V, ids) {
  n <- length(ids)
  names_theta <- paste0("..", ids)
  lambda <- setNames(rep(0, n), ids)
  Vl <- matrix(0, n, n, dimnames = list(ids, ids))
  present <- names_theta %in% names(coefs)
  lambda[present] <- coefs[names_theta[present]]
  Vl[present, present] <- V[names_theta[present], names_theta[present]]
  P <- diag(n) - matrix(1 / n, n, n)
  Vt <- P %*% Vl %*% P
  list(essay_id = ids, theta = as.numeric(lambda - mean(lambda)),
       se = sqrt(pmax(diag(Vt), 0)))
}

fit_bt <- function(d, br, order) {
  ids <- sort(unique(c(d$essay_a_id, d$essay_b_id)))
  a <- factor(d$essay_a_id, levels = ids)
  b <- factor(d$essay_b_id, levels = ids)
  y <- as.integer(d$winner == "essay_a")
  p1 <- data.frame(.. = a, at.home = 1, check.names = FALSE)
  p2 <- data.frame(.. = b, at.home = 0, check.names = FALSE)
  formula <- if (order) ~ .. + at.home else ~ ..
  m <- BTm(y, p1, p2, formula = formula, id = "..", br = br)
  coefs <- coef(m)
  V <- vcov(m)
  out <- sum_to_zero(coefs, V, ids)
  if (order) {
    out$delta <- unname(coefs["at.home"])
    out$se_delta <- sqrt(V["at.home", "at.home"])
  }
  out$deviance <- m$deviance
  out$converged <- isTRUE(m$converged)
  out
}

# sirt::btm with ignore.ties = TRUE, eps = 0.3, maxiter = 100, conv = 1e-4, written from
# the algorithm as published (sirt's documentation and source): epsilon-adjusted scores,
# start logit((share + .1)/1.2), one Newton step per parameter per sweep from the same
# probabilities, steps capped at 0.98^t, centring after each sweep.
sirt_btm_reference <- function(d, eps = 0.3, estimate_eta = FALSE, maxiter = 100,
                               conv = 1e-4) {
  ids <- sort(unique(c(d$essay_a_id, d$essay_b_id)))
  i1 <- match(d$essay_a_id, ids)
  i2 <- match(d$essay_b_id, ids)
  y <- as.numeric(d$winner == "essay_a")
  n <- length(ids)
  wins <- tabulate(i1[y == 1], n) + tabulate(i2[y == 0], n)
  played <- tabulate(i1, n) + tabulate(i2, n)
  score <- eps + (played - 2 * eps) * wins / played
  theta <- qlogis((score / played + 0.1) / 1.2)
  theta <- theta - mean(theta)
  eta <- 0
  cap <- 1
  iter <- 0
  change <- Inf
  se <- rep(NA, n)
  se_eta <- NA
  while (iter < maxiter && change > conv) {
    theta0 <- theta
    eta0 <- eta
    p <- plogis(theta[i1] + eta - theta[i2])
    cap <- cap * 0.98
    info <- p * (1 - p)
    if (estimate_eta) {
      step <- (sum(y) - sum(p)) / sum(info)
      eta <- eta + sign(step) * min(abs(step), cap)
      se_eta <- sqrt(1 / sum(info))
    }
    expected <- sapply(seq_len(n), function(k) sum(p[i1 == k]) + sum(1 - p[i2 == k]))
    curvature <- 1e-20 + sapply(seq_len(n), function(k) sum(info[i1 == k | i2 == k]))
    step <- (score - expected) / curvature
    theta <- theta + sign(step) * pmin(abs(step), cap)
    se <- sqrt(1 / curvature)
    theta <- theta - mean(theta)
    iter <- iter + 1
    change <- max(c(abs(theta - theta0), abs(eta - eta0)))
  }
  v0 <- var(theta)
  v2 <- mean(se^2)
  list(essay_id = ids, theta = theta, se_theta = se, eta = eta, se_eta = se_eta,
       mle_rel = 1 - v2 / v0, sepG = sqrt(v0 / v2), iter = iter)
}

for (path in Sys.glob(file.path(folder, "*.csv"))) {
  d <- read.csv(path, stringsAsFactors = FALSE)
  name <- sub("\\.csv$", "", basename(path))
  ref <- list(
    source = paste("BradleyTerry2", as.character(packageVersion("BradleyTerry2")),
                   "and brglm", as.character(packageVersion("brglm")), "on",
                   R.version.string),
    firth = fit_bt(d, br = TRUE, order = FALSE),
    firth_order = fit_bt(d, br = TRUE, order = TRUE),
    sirt = sirt_btm_reference(d),
    sirt_eta = sirt_btm_reference(d, estimate_eta = TRUE)
  )
  if (name == "connected") {
    ref$mle <- fit_bt(d, br = FALSE, order = FALSE)
    ref$mle_order <- fit_bt(d, br = FALSE, order = TRUE)
  }
  write_json(ref, sub("\\.csv$", ".reference.json", path), digits = NA, auto_unbox = TRUE,
             pretty = TRUE)
  cat("wrote", sub("\\.csv$", ".reference.json", path), "\n")
}

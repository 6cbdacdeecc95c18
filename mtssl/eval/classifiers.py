"""The probes' classifiers, as pure functions on feature arrays.

- ``linear_probe``: multinomial logistic regression on standardised features (scikit-learn, L-BFGS), its
  L2 regularisation chosen by stratified cross-validation on the train split only.
- ``knn_probe``: DINO's weighted k-NN (Caron et al. 2021, ``eval_knn.py``): cosine similarity on
  L2-normalised features, the k nearest train samples vote with weight ``exp(sim / T)``, T = 0.07, k = 20.
  Features are standardised with the train split's statistics first, so that a few large channels
  cannot decide the cosine alone.
- ``learn_eval_lasso``: the paper's evaluation protocol for the lasso (method.md): a new row of alpha,
  learned for the downstream task with its L1 penalty while the trunk stays frozen. Average pooling is
  linear, so mixing pooled candidates equals pooling the mix: the row is fitted on cached features.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 7))  # inverse L2 strengths tried by cross-validation
KNN_T = 0.07  # src: DINO eval_knn.py, temperature 0.07
KNN_K = 20  # src: DINO eval_knn.py reports k = 20


@dataclass(frozen=True)
class Scores:
    """Top-1 (and top-5 where there are more than 5 classes, else None) accuracy on the validation split."""

    top1: float
    top5: float | None = None
    detail: float | None = None  # the chosen regularisation (linear) or k (k-NN)


def standardise(train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return (train - mean) / std, (val - mean) / std


def row_space(train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both splits in coordinates of the train split's row space, when it is smaller than the feature space.

    An L2-regularised linear model's weights lie in the span of its training samples (representer theorem),
    so this loses nothing: every fold's and the final model's scores are unchanged, and with 200 images of
    2,000 features the fits run ten times faster.
    """
    if train.shape[1] <= train.shape[0]:
        return train, val
    _, singular, vt = np.linalg.svd(train, full_matrices=False)
    basis = vt[singular > singular[0] * 1e-6].T
    if basis.shape[1] == 0:  # constant features (a dead source, a row pruned to zero): one zero column
        return np.zeros((len(train), 1), train.dtype), np.zeros((len(val), 1), val.dtype)
    return train @ basis, val @ basis


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, classes: int) -> Scores:
    top1 = float((scores.argmax(axis=1) == labels).mean())
    if classes <= 5:
        return Scores(top1)
    top5 = np.argsort(-scores, axis=1)[:, :5]
    return Scores(top1, float((top5 == labels[:, None]).any(axis=1).mean()))


def linear_probe(
    train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, classes: int, seed: int = 0
) -> Scores:
    """Logistic regression, C picked by stratified k-fold CV on the train split, refit on all of it."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    train_x, val_x = row_space(*standardise(train_x, val_x))
    folds = int(min(5, np.bincount(train_y).min()))
    # One BLAS thread: these are many small fits, which threads slow down (30x on 2 busy cores, measured).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")  # convergence and deprecation chatter at extreme C
        if folds >= 2:
            cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
            model = LogisticRegressionCV(Cs=list(C_GRID), cv=cv, max_iter=500, scoring="accuracy")
            model.fit(train_x, train_y)
            chosen = float(np.atleast_1d(model.C_)[0])
        else:  # too few samples per class to cross-validate: a middle C
            chosen = 1e-2
            model = LogisticRegression(C=chosen, max_iter=500).fit(train_x, train_y)
    decision = model.decision_function(val_x)
    if decision.ndim == 1:  # binary: one decision value, positive for classes_[1]
        decision = np.stack([-decision, decision], axis=1)
    scores = np.full((len(val_x), classes), -np.inf)
    scores[:, model.classes_] = decision
    result = topk_accuracy(scores, val_y, classes)
    return Scores(result.top1, result.top5, chosen)


def knn_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    classes: int,
    k: int = KNN_K,
    temperature: float = KNN_T,
) -> Scores:
    """DINO's weighted cosine k-NN on standardised, L2-normalised features."""
    train_x, val_x = standardise(train_x, val_x)
    train_t = F.normalize(torch.from_numpy(train_x).float(), dim=1)
    val_t = F.normalize(torch.from_numpy(val_x).float(), dim=1)
    k = min(k, len(train_t))
    sims, index = (val_t @ train_t.T).topk(k, dim=1)
    votes = torch.zeros(len(val_t), classes)
    votes.scatter_add_(1, torch.from_numpy(train_y)[index], (sims / temperature).exp())
    result = topk_accuracy(votes.numpy(), val_y, classes)
    return Scores(result.top1, result.top5, float(k))


def learn_eval_lasso(
    candidates: np.ndarray,
    labels: np.ndarray,
    classes: int,
    l1: float = 1e-2,
    l2: float = 1e-3,
    steps: int = 300,
    lr: float = 0.05,
    seed: int = 0,
) -> np.ndarray:
    """An evaluation lasso row: alpha (units,) fitted with a softmax classifier on frozen candidates.

    ``candidates`` (units, N, D) are pooled, normalised block-3 units. The row starts at the naive choice
    (the last unit) and is learned jointly with a linear classifier on ``sum_m alpha_m x_m`` by proximal
    gradient descent: Adam on the cross-entropy plus ``l2 |W|^2`` (the classifier's norm must be paid for,
    or it would absorb any shrinking of alpha), then soft-thresholding of alpha by ``lr * l1`` every step,
    which sets unused units exactly to zero.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(candidates).float()
    x = x / x.flatten(1).std(dim=1).mean().clamp_min(1e-8)  # one global scale: keeps the units' relative sizes
    y = torch.from_numpy(labels)
    units, _, dims = x.shape
    alpha = torch.zeros(units)
    alpha[-1] = 1.0
    alpha.requires_grad_(True)
    weight = (torch.randn(dims, classes, generator=gen) * 0.01).requires_grad_(True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.Adam([alpha, weight, bias], lr=lr)
    for _ in range(steps):
        mixed = torch.einsum("u,und->nd", alpha, x)
        loss = F.cross_entropy(mixed @ weight + bias, y) + l2 * weight.square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # proximal step of the L1 penalty
            alpha.copy_(alpha.sign() * (alpha.abs() - lr * l1).clamp_min(0))
    return alpha.detach().numpy().astype(np.float64)


def mix(candidates: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The evaluation row's feature: ``sum_m alpha_m candidates_m`` (N, D)."""
    return np.tensordot(alpha.astype(candidates.dtype), candidates, axes=1)

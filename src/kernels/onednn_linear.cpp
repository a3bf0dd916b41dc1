// Float32 Linear layers on the CPU through oneDNN (bundled in libtorch), with autograd.
//
// Why: libtorch runs a float32 `linear` on the CPU through MKL's sgemm. On AMD CPUs MKL takes its
// generic path: on two Zen 4 cores it runs LoFi's wider products at 100-130 GFLOP/s, while the
// oneDNN inside the same libtorch runs them at 165-195 GFLOP/s (it picks its AVX-512 kernels by the
// instruction set, not by the vendor). libtorch routes only bfloat16 and float16 products to
// oneDNN, so this shim calls oneDNN's operators itself:
// - forward: `mkldnn::_linear_pointwise` (the operator torch.compile's CPU backend emits), with
//   the bias and, for inference, the following ReLU fused into the product;
// - backward (training): `at::native::mkldnn_matmul` on the transposed views, no copies.
// The products are exact float32 (oneDNN's default math mode), summed in another order than MKL's.
//
// Every function catches every C++ exception: a failure returns null and the Rust side falls back
// to libtorch's `linear` (src/kernels/linear.rs).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>

#include <string>
#include <vector>

namespace at {
namespace native {
// Declared in ATen/native/mkldnn/Matmul.h, which the wheel does not ship; exported by
// libtorch_cpu. result = beta * result + alpha * mat1 @ mat2 (2-D, CPU; mat1 and mat2 contiguous
// or transposed, anything else is copied first).
TORCH_API void mkldnn_matmul(const Tensor &mat1, const Tensor &mat2, const Tensor &result, float beta, float alpha);
}  // namespace native
}  // namespace at

namespace {

// x (n, k) w^T (m, k) + b (m, or undefined), then ReLU when `relu`: oneDNN's fused Linear.
at::Tensor linear_pointwise(const at::Tensor &x, const at::Tensor &w, const at::Tensor &b, bool relu) {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  // Boxed call: the schema is (Tensor X, Tensor W, Tensor? B, str attr, Scalar?[] scalars,
  // str? algorithm); a mismatch throws rather than miscalls.
  std::vector<c10::IValue> stack;
  stack.reserve(6);
  stack.emplace_back(x);
  stack.emplace_back(w);
  stack.emplace_back(b.defined() ? c10::IValue(b) : c10::IValue());
  stack.emplace_back(std::string(relu ? "relu" : "none"));
  stack.emplace_back(c10::List<std::optional<at::Scalar>>());
  stack.emplace_back(c10::IValue());
  op.callBoxed(&stack);
  return stack.at(0).toTensor();
}

// a (n, k) @ b (k, m) into a new (n, m) tensor; a and b may be transposed views.
at::Tensor product(const at::Tensor &a, const at::Tensor &b) {
  auto out = at::empty({a.size(0), b.size(1)}, a.options());
  at::native::mkldnn_matmul(a, b, out, 0.0f, 1.0f);
  return out;
}

// y = x w^T + b with its gradients: grad_x = g w, grad_w = g^T x, grad_b = sum of g's rows.
struct OneDnnLinear : public torch::autograd::Function<OneDnnLinear> {
  static at::Tensor forward(torch::autograd::AutogradContext *ctx, const at::Tensor &x, const at::Tensor &w,
                            const at::Tensor &b) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["bias"] = b.defined();
    return linear_pointwise(x, w, b, false);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0];
    const auto &w = saved[1];
    const auto &grad = grads[0];
    at::Tensor grad_x, grad_w, grad_b;
    if (ctx->needs_input_grad(0)) {
      grad_x = product(grad, w);  // (n, m) @ (m, k)
    }
    if (ctx->needs_input_grad(1)) {
      grad_w = product(grad.t(), x);  // (m, n) @ (n, k)
    }
    if (ctx->needs_input_grad(2) && ctx->saved_data["bias"].toBool()) {
      grad_b = grad.sum(0);
    }
    return {grad_x, grad_w, grad_b};
  }
};

}  // namespace

extern "C" {

// Whether this libtorch has oneDNN and its fused Linear operator.
int lofi_onednn_available(void) {
  try {
    return at::hasMKLDNN() &&
                   c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""}).has_value()
               ? 1
               : 0;
  } catch (...) {
    return 0;
  }
}

// x (n, k), w (m, k), b (m) or null: float32, CPU, n, k, m >= 1. Returns a new tensor x w^T + b,
// passed through ReLU when `relu` is non-zero, differentiable in x, w and b when autograd records
// (ReLU is then refused: the caller applies it). Null on any failure.
at::Tensor *lofi_onednn_linear(const at::Tensor *x, const at::Tensor *w, const at::Tensor *b, int relu) {
  try {
    const at::Tensor bias = b ? *b : at::Tensor();
    const bool recorded = at::GradMode::is_enabled() &&
                          (x->requires_grad() || w->requires_grad() || (bias.defined() && bias.requires_grad()));
    if (!recorded) {
      return new at::Tensor(linear_pointwise(*x, *w, bias, relu != 0));
    }
    if (relu != 0) {
      return nullptr;
    }
    return new at::Tensor(OneDnnLinear::apply(*x, *w, bias));
  } catch (...) {
    return nullptr;
  }
}

}  // extern "C"

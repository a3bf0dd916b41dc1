// The installed lofi.hpp, used by an out-of-tree C++17 program.
#include <cstdio>
#include <vector>

#include <lofi.hpp>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  try {
    const lofi::Model model = lofi::Model::load(argv[1]);
    std::vector<float> pixels(16 * 12, 0.5f);
    const lofi::ImageView in(pixels, 16, 12, model.channels_in());
    const std::vector<float> out = model.reconstruct_region(in, lofi::Grid::scaled(in, 2.0));
    std::printf("consumer_cpp: liblofi %s reconstructed %zu values\n", lofi::version(), out.size());
    return out.size() == 31 * 23 * model.channels_out() ? 0 : 1;
  } catch (const lofi::Error& e) {
    std::fprintf(stderr, "consumer_cpp: %s: %s\n", e.status_name(), e.what());
    return 1;
  }
}

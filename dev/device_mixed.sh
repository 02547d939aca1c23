#!/usr/bin/env bash
# --precision mixed on a lent GPU: what the adapter offers (shader-f16,
# cooperative matrices), the f16 kernel's and a mixed run's parity tests,
# then f32 against mixed on the standard work and on 784-4096-4096-10 at
# batch 4096 (where the products are large enough for f16 to matter).
# Binaries built here and carried in .dev/ (see dev/device_check.sh), the
# Vulkan loader's packages in .gl/:
#   cargo build --release -p retroprop-cli && cargo test --release --test mixed_precision --no-run
#   mkdir -p .dev && cp target/release/retroprop .dev/
#   cp $(ls -t target/release/deps/mixed_precision-* | grep -v '\.d$' | head -1) .dev/mixed_precision
# Then: run(command="bash dev/device_mixed.sh", carry=[".dev", ".gl"], timeout_s=420).
# The f32 runs take the default kernel choice (shared-by-shape); the mixed
# runs take matmul_f16 (64 × 64 tiles of f16, 4 × 4 a thread) everywhere.
. dev/device_env.sh device_mixed.txt
echo "== mixed precision: f16 kernel bound, rounding, a mixed run against the CPU, digits"
timeout 120 ./.dev/mixed_precision --nocapture --test-threads 2 2>&1 \
  | grep -E "^test |test result|NOT OK|digits|step 7|f16 matmul 65x257x65"
for arch in 784,1024,1024,10 784,4096,4096,10; do
  batches=1024,4096
  for p in f32 mixed; do
    echo "-- $arch, --precision $p"
    timeout 120 ./.dev/retroprop bench --devices gpu --arch $arch --batch $batches \
      --steps 20 --precision $p | grep gpu:
  done
done
echo "== where a mixed step goes (784-4096-4096-10, batch 4096)"
timeout 90 ./.dev/retroprop bench --devices gpu --arch 784,4096,4096,10 --batch 4096 \
  --steps 10 --precision mixed --profile | tail -25

using System.Linq;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// RMSNorm for the model's HiddenSize, and for quantized projections RMSNorm fused with quantizing the activations.
/// </summary>
internal static class NormEmitter
{
    private const int Width = KernelEmitter.Width; // floats per Vector256

    public static void Write(SourceWriter w, ForwardPlan plan)
    {
        ModelSpec s = plan.Spec;
        int vectorEnd = s.HiddenSize - s.HiddenSize % Width;
        w.Line("""
            /// <summary>1 / sqrt(mean(x²) + RmsNormEps) of the HiddenSize floats at <paramref name="x0"/>.</summary>
            [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
            private static float InverseRms(ref float x0)
            {
            """);
        w.Line(vectorEnd > 0 ? "    Vector256<float> squares = Vector256<float>.Zero;" : "    float sumOfSquares = 0f;");
        if (vectorEnd > 0)
        {
            w.Line($$"""
                    for (int i = 0; i < {{vectorEnd}}; i += 8)
                    {
                        Vector256<float> v = Vector256.LoadUnsafe(ref x0, (nuint)i);
                        squares = Vector256.FusedMultiplyAdd(v, v, squares);
                    }
                    float sumOfSquares = Vector256.Sum(squares);
                """);
        }
        if (vectorEnd < s.HiddenSize)
            w.Line($"    for (int i = {vectorEnd}; i < HiddenSize; i++)\n        sumOfSquares += Unsafe.Add(ref x0, i) * Unsafe.Add(ref x0, i);");
        w.Line("""
                return 1f / MathF.Sqrt(sumOfSquares / HiddenSize + RmsNormEps);
            }

            /// <summary>y = x / sqrt(mean(x²) + RmsNormEps) ⊙ weight; x, weight, y: [HiddenSize].</summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y)
            {
                if (x.Length < HiddenSize || weight.Length < HiddenSize || y.Length < HiddenSize)
                    throw new ArgumentException("RmsNorm: a buffer is smaller than HiddenSize.");
                ref float x0 = ref MemoryMarshal.GetReference(x);
                ref float w0 = ref MemoryMarshal.GetReference(weight);
                ref float y0 = ref MemoryMarshal.GetReference(y);
                float scale = InverseRms(ref x0);
            """);
        if (vectorEnd > 0)
        {
            w.Line($$"""
                    for (int i = 0; i < {{vectorEnd}}; i += 8)
                        (Vector256.LoadUnsafe(ref w0, (nuint)i) * (Vector256.LoadUnsafe(ref x0, (nuint)i) * scale)).StoreUnsafe(ref y0, (nuint)i);
                """);
        }
        if (vectorEnd < s.HiddenSize)
            w.Line($"    for (int i = {vectorEnd}; i < HiddenSize; i++)\n        Unsafe.Add(ref y0, i) = Unsafe.Add(ref w0, i) * (Unsafe.Add(ref x0, i) * scale);");
        w.Line("}");
        // Only fused jobs (q/k/v, gate/up) normalize their input; the fused variant serves those with 32-block activations.
        bool fusedBlocks = plan.LayerKinds.Any(kind => FusedJobEmitter.QkvKernels(plan, kind.Formats).Concat(FusedJobEmitter.GateUpKernels(plan, kind.Formats))
            .Any(k => k.Activations == ActivationKind.Q8_0));
        if (fusedBlocks)
        {
            w.Line("""

                /// <summary>
                /// RMSNorm fused into a quantized matrix product's input: q and scales are what BlockKernels.QuantizeBlocks makes of
                /// x / sqrt(mean(x²) + RmsNormEps) ⊙ weight, computed a block at a time, so the normalized floats are never stored.
                /// x, weight: [HiddenSize]; q: [HiddenSize] int8; scales, sums: [HiddenSize/32].
                /// </summary>
                [MethodImpl(MethodImplOptions.AggressiveOptimization)]
                public static void RmsNormQuantize(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<sbyte> q, Span<float> scales, Span<int> sums)
                {
                    if (x.Length < HiddenSize || weight.Length < HiddenSize || q.Length < HiddenSize || scales.Length < HiddenSize / 32 || sums.Length < HiddenSize / 32)
                        throw new ArgumentException("RmsNormQuantize: a buffer is smaller than HiddenSize.");
                    ref float x0 = ref MemoryMarshal.GetReference(x);
                    ref float w0 = ref MemoryMarshal.GetReference(weight);
                    ref sbyte q0 = ref MemoryMarshal.GetReference(q);
                    ref float scales0 = ref MemoryMarshal.GetReference(scales);
                    ref int sums0 = ref MemoryMarshal.GetReference(sums);
                    Vector256<float> scale = Vector256.Create(InverseRms(ref x0));
                    for (int b = 0; b < HiddenSize / 32; b++)
                    {
                        ref float xb = ref Unsafe.Add(ref x0, b * 32);
                        ref float wb = ref Unsafe.Add(ref w0, b * 32);
                        Unsafe.Add(ref scales0, b) = BlockKernels.QuantizeBlock(
                            Vector256.LoadUnsafe(ref wb) * (Vector256.LoadUnsafe(ref xb) * scale), Vector256.LoadUnsafe(ref wb, 8) * (Vector256.LoadUnsafe(ref xb, 8) * scale),
                            Vector256.LoadUnsafe(ref wb, 16) * (Vector256.LoadUnsafe(ref xb, 16) * scale), Vector256.LoadUnsafe(ref wb, 24) * (Vector256.LoadUnsafe(ref xb, 24) * scale),
                            ref Unsafe.Add(ref q0, b * 32), out Unsafe.Add(ref sums0, b));
                    }
                }
                """);
        }
    }
}

namespace Llama.Compiled.Generator;

/// <summary>
/// The element-wise kernels: SwiGLU and the bias add.
/// </summary>
internal static class ActivationEmitter
{
    /// <summary>Kernels.SwiGlu, the activation gate_proj and up_proj are fused with.</summary>
    public static void WriteSwiGlu(SourceWriter w)
    {
        w.Line("""
            /// <summary>gate = SiLU(gate) ⊙ up = gate / (1 + exp(-gate)) ⊙ up, over gate's length.</summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            private static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
            {
                if (up.Length < gate.Length)
                    throw new ArgumentException("SwiGlu: up is shorter than gate.");
                ref float g0 = ref MemoryMarshal.GetReference(gate);
                ref float u0 = ref MemoryMarshal.GetReference(up);
                int i = 0;
                for (; i + 8 <= gate.Length; i += 8)
                {
                    Vector256<float> g = Vector256.LoadUnsafe(ref g0, (nuint)i);
                    (g / (Vector256<float>.One + KernelMath.Exp(-g)) * Vector256.LoadUnsafe(ref u0, (nuint)i)).StoreUnsafe(ref g0, (nuint)i);
                }
                for (; i < gate.Length; i++)
                {
                    float g = Unsafe.Add(ref g0, i);
                    Unsafe.Add(ref g0, i) = g / (1f + KernelMath.Exp(-g)) * Unsafe.Add(ref u0, i);
                }
            }
            """);
    }

    /// <summary>Kernels.AddBias, for models with q/k/v, output or feed-forward biases.</summary>
    public static void WriteAddBias(SourceWriter w)
    {
        w.Line("""
            /// <summary>y[t] += bias for t &lt; tokens; y: [tokens, bias.Length].</summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            public static void AddBias(Span<float> y, ReadOnlySpan<float> bias, int tokens)
            {
                for (int t = 0; t < tokens; t++)
                {
                    Span<float> row = y.Slice(t * bias.Length, bias.Length);
                    KernelMath.Add(row, bias);
                }
            }

            """);
    }
}

using System.Linq;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// Writes the nested <c>Kernels</c> class: one matrix-product method per distinct weight shape and
/// the shape-specialized RMSNorm, RoPE, attention and SwiGLU. Loops run over constant bounds; the
/// only bounds check of a kernel is the length check at its entry.
/// </summary>
internal static class KernelEmitter
{
    private const int Width = 8; // floats per Vector256

    public static void Write(SourceWriter w, ForwardPlan plan)
    {
        ModelSpec s = plan.Spec;
        w.Line("/// <summary>");
        w.Line("/// Kernels specialized to this model's shapes. Planner decisions:");
        foreach (MatMulKernel k in plan.MatMuls)
            w.Line($"/// - {k.Name} ({k.Uses}): {k.Accumulators} Vector256 accumulator(s) per row for one token, {plan.TokenTile} tokens per row pass in prefill.");
        w.Line($"/// - Prefill evaluates up to {plan.PrefillChunk} tokens per sweep through the layers; decode is the same path with one token.");
        w.Line($"/// - Attention: {s.GroupSize} query head(s) per KV head, HeadDim {s.HeadDim} {(s.HeadDim % Width == 0 ? $"= {s.HeadDim / Width} Vector256" : "(scalar: not a multiple of 8)")}.");
        w.Line("/// - Single-threaded.");
        w.Line("/// </summary>");
        using (w.Block("private static class Kernels"))
        {
            foreach (MatMulKernel kernel in plan.MatMuls)
            {
                WriteMatMul(w, kernel, plan.TokenTile);
                w.Line();
            }
            WriteRmsNorm(w, s);
            w.Line();
            WriteRope(w, s);
            w.Line();
            WriteAttention(w, s);
            w.Line();
            WriteSwiGlu(w);
            w.Line();
            w.Line("""
                /// <summary>x = softmax(x), in place; the max is subtracted first so exp cannot overflow.</summary>
                private static void Softmax(Span<float> x)
                {
                    float max = TensorPrimitives.Max(x);
                    TensorPrimitives.Subtract(x, max, x);
                    TensorPrimitives.Exp(x, x);
                    TensorPrimitives.Multiply(x, 1f / TensorPrimitives.Sum(x), x);
                }

                [MethodImpl(MethodImplOptions.AggressiveInlining)]
                private static void Store(ref float y, float value, bool accumulate) => y = accumulate ? y + value : value;
                """);
        }
    }

    private static void WriteMatMul(SourceWriter w, MatMulKernel k, int tile)
    {
        int rows = k.Rows, cols = k.Cols;
        int vectorEnd = cols - cols % Width;
        string[] tokens = Enumerable.Range(0, tile).Select(i => ((char)('a' + i)).ToString()).ToArray();

        w.Line($$"""
            /// <summary>
            /// y[t] = W·x[t] (y[t] += W·x[t] when <paramref name="accumulate"/>) for t &lt; <paramref name="tokens"/>.
            /// W: [{{rows}}, {{cols}}] row-major; x: [tokens, {{cols}}]; y: [tokens, {{rows}}]. Used by {{k.Uses}}.
            /// </summary>
            """);
        using (w.Block($"public static void {k.Name}(ReadOnlySpan<float> w, ReadOnlySpan<float> x, Span<float> y, int tokens, bool accumulate)"))
        {
            w.Line($$"""
                const int Rows = {{rows}}, Cols = {{cols}};
                // The kernel's only bounds check; below, every access is a ref offset within these lengths.
                if (tokens < 0 || w.Length < Rows * Cols || x.Length < (long)tokens * Cols || y.Length < (long)tokens * Rows)
                    throw new ArgumentException("{{k.Name}}: a buffer is smaller than its shape.");
                ref float w0 = ref MemoryMarshal.GetReference(w);
                ref float x0 = ref MemoryMarshal.GetReference(x);
                ref float y0 = ref MemoryMarshal.GetReference(y);
                int t = 0;

                // {{tile}} tokens per pass over the weights: each row is loaded once for all of them.
                """);
            using (w.Block($"for (; t + {tile} <= tokens; t += {tile})"))
            {
                w.Line("ref float xa = ref Unsafe.Add(ref x0, t * Cols);");
                for (int i = 1; i < tile; i++)
                    w.Line($"ref float x{tokens[i]} = ref Unsafe.Add(ref xa, {i} * Cols);");
                w.Line("ref float yt = ref Unsafe.Add(ref y0, t * Rows);");
                using (w.Block("for (int r = 0; r < Rows; r++)"))
                {
                    w.Line("ref float row = ref Unsafe.Add(ref w0, r * Cols);");
                    if (vectorEnd > 0)
                    {
                        w.Line($"Vector256<float> {string.Join(", ", tokens.Select(n => $"s{n} = Vector256<float>.Zero"))};");
                        using (w.Block($"for (int i = 0; i < {vectorEnd}; i += 8)"))
                        {
                            w.Line("Vector256<float> wv = Vector256.LoadUnsafe(ref row, (nuint)i);");
                            foreach (string n in tokens)
                                w.Line($"s{n} = Vector256.FusedMultiplyAdd(wv, Vector256.LoadUnsafe(ref x{n}, (nuint)i), s{n});");
                        }
                        w.Line($"float {string.Join(", ", tokens.Select(n => $"{n} = Vector256.Sum(s{n})"))};");
                    }
                    else
                    {
                        w.Line($"float {string.Join(", ", tokens.Select(n => $"{n} = 0f"))};");
                    }
                    if (vectorEnd < cols)
                    {
                        using (w.Block($"for (int i = {vectorEnd}; i < Cols; i++)"))
                        {
                            w.Line("float wi = Unsafe.Add(ref row, i);");
                            foreach (string n in tokens)
                                w.Line($"{n} += wi * Unsafe.Add(ref x{n}, i);");
                        }
                    }
                    for (int i = 0; i < tile; i++)
                        w.Line($"Store(ref Unsafe.Add(ref yt, {(i == 0 ? "" : $"{i} * Rows + ")}r), {tokens[i]}, accumulate);");
                }
            }
            w.Line();
            w.Line(k.Accumulators > 1
                ? $"// The remaining tokens (all of decode) one at a time, {k.Accumulators} independent sums per row to hide FMA latency."
                : "// The remaining tokens (all of decode) one at a time.");
            using (w.Block("for (; t < tokens; t++)"))
            {
                w.Line("ref float xt = ref Unsafe.Add(ref x0, t * Cols);");
                w.Line("ref float yt = ref Unsafe.Add(ref y0, t * Rows);");
                using (w.Block("for (int r = 0; r < Rows; r++)"))
                {
                    w.Line("ref float row = ref Unsafe.Add(ref w0, r * Cols);");
                    WriteDot(w, k.Accumulators, cols, vectorEnd);
                    w.Line("Store(ref Unsafe.Add(ref yt, r), sum, accumulate);");
                }
            }
        }
    }

    /// <summary>sum = row · xt over Cols, with <paramref name="accumulators"/> independent vector sums.</summary>
    private static void WriteDot(SourceWriter w, int accumulators, int cols, int vectorEnd)
    {
        if (vectorEnd == 0)
        {
            w.Line("float sum = 0f;");
        }
        else
        {
            int step = accumulators * Width;
            int unrolledEnd = vectorEnd - vectorEnd % step;
            w.Line($"Vector256<float> {string.Join(", ", Enumerable.Range(0, accumulators).Select(a => $"s{a} = Vector256<float>.Zero"))};");
            if (unrolledEnd > 0)
            {
                using (w.Block($"for (int i = 0; i < {unrolledEnd}; i += {step})"))
                {
                    for (int a = 0; a < accumulators; a++)
                    {
                        string offset = a == 0 ? "i" : $"i + {a * Width}";
                        w.Line($"s{a} = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref row, (nuint)({offset})), Vector256.LoadUnsafe(ref xt, (nuint)({offset})), s{a});");
                    }
                }
            }
            for (int i = unrolledEnd, a = 0; i < vectorEnd; i += Width, a++)
                w.Line($"s{a} = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref row, {i}), Vector256.LoadUnsafe(ref xt, {i}), s{a});");
            w.Line($"float sum = Vector256.Sum({SumTree(accumulators)});");
        }
        if (vectorEnd < cols)
        {
            using (w.Block($"for (int i = {vectorEnd}; i < Cols; i++)"))
                w.Line("sum += Unsafe.Add(ref row, i) * Unsafe.Add(ref xt, i);");
        }
    }

    /// <summary>s0..s(n-1) added pairwise: "(s0 + s1) + (s2 + s3)".</summary>
    private static string SumTree(int n) => n switch
    {
        1 => "s0",
        2 => "s0 + s1",
        3 => "(s0 + s1) + s2",
        _ => "(s0 + s1) + (s2 + s3)",
    };

    private static void WriteRmsNorm(SourceWriter w, ModelSpec s)
    {
        int vectorEnd = s.HiddenSize - s.HiddenSize % Width;
        w.Line("""
            /// <summary>y = x / sqrt(mean(x²) + RmsNormEps) ⊙ weight; x, weight, y: [HiddenSize].</summary>
            public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y)
            {
                if (x.Length < HiddenSize || weight.Length < HiddenSize || y.Length < HiddenSize)
                    throw new ArgumentException("RmsNorm: a buffer is smaller than HiddenSize.");
                ref float x0 = ref MemoryMarshal.GetReference(x);
                ref float w0 = ref MemoryMarshal.GetReference(weight);
                ref float y0 = ref MemoryMarshal.GetReference(y);
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
        w.Line("    float scale = 1f / MathF.Sqrt(sumOfSquares / HiddenSize + RmsNormEps);");
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
    }

    private static void WriteRope(SourceWriter w, ModelSpec s)
    {
        w.Line("""
            /// <summary>
            /// Rotates every head of <paramref name="v"/> ([heads, HeadDim]) by one position's angles
            /// (cos, sin: [RopePairs]), pairing dimensions j and j + RopePairs: Hugging Face's layout.
            /// </summary>
            public static void RopeRotateHalf(Span<float> v, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
            {
                for (int head = 0; head + HeadDim <= v.Length; head += HeadDim)
                {
                    for (int j = 0; j < RopePairs; j++)
                    {
                        float x0 = v[head + j], x1 = v[head + j + RopePairs];
                        v[head + j] = x0 * cos[j] - x1 * sin[j];
                        v[head + j + RopePairs] = x0 * sin[j] + x1 * cos[j];
                    }
                }
            }

            /// <summary>
            /// Rotates every head of <paramref name="v"/> ([heads, HeadDim]) by one position's angles
            /// (cos, sin: [RopePairs]), pairing dimensions 2j and 2j + 1: the llama2.c and GGUF layout.
            /// </summary>
            public static void RopeAdjacentPairs(Span<float> v, ReadOnlySpan<float> cos, ReadOnlySpan<float> sin)
            {
                for (int head = 0; head + HeadDim <= v.Length; head += HeadDim)
                {
                    for (int j = 0; j < RopePairs; j++)
                    {
                        float x0 = v[head + 2 * j], x1 = v[head + 2 * j + 1];
                        v[head + 2 * j] = x0 * cos[j] - x1 * sin[j];
                        v[head + 2 * j + 1] = x0 * sin[j] + x1 * cos[j];
                    }
                }
            }
            """);
    }

    private static void WriteAttention(SourceWriter w, ModelSpec s)
    {
        int vectors = s.HeadDim % Width == 0 ? s.HeadDim / Width : 0;
        // Up to 8 output vectors stay in registers across the positions; wider heads accumulate in memory.
        bool outputInRegisters = vectors > 0 && vectors <= 8;
        w.Line($$"""
            /// <summary>
            /// Attention of one token over cache positions [0, positions): for each of the KvHeadCount={{s.KvHeadCount}}
            /// KV heads, the GroupSize={{s.GroupSize}} query heads that share it (grouped-query attention).
            /// q, output: [QueryDim={{s.QueryDim}}]; keys, values: one layer's cache [KvHeadCount, MaxContext, HeadDim={{s.HeadDim}}];
            /// scores: [MaxContext] scratch.
            /// </summary>
            public static void Attention(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int positions, Span<float> scores, Span<float> output)
            {
                if (q.Length < QueryDim || output.Length < QueryDim || keys.Length < KvHeadCount * MaxContext * HeadDim
                    || values.Length < KvHeadCount * MaxContext * HeadDim || positions < 1 || positions > MaxContext || scores.Length < positions)
                    throw new ArgumentException("Attention: a buffer is smaller than its shape.");
                const float Scale = {{Emitter.Float((float)(1.0 / System.Math.Sqrt(s.HeadDim)))}}; // 1 / sqrt(HeadDim)
                ref float q0 = ref MemoryMarshal.GetReference(q);
                ref float k0 = ref MemoryMarshal.GetReference(keys);
                ref float v0 = ref MemoryMarshal.GetReference(values);
                ref float s0 = ref MemoryMarshal.GetReference(scores);
                ref float o0 = ref MemoryMarshal.GetReference(output);
                for (int kvHead = 0; kvHead < KvHeadCount; kvHead++)
                {
                    ref float headKeys = ref Unsafe.Add(ref k0, kvHead * MaxContext * HeadDim);
                    ref float headValues = ref Unsafe.Add(ref v0, kvHead * MaxContext * HeadDim);
                    for (int g = 0; g < GroupSize; g++)
                    {
                        int head = kvHead * GroupSize + g;
                        ref float qh = ref Unsafe.Add(ref q0, head * HeadDim);
                        ref float oh = ref Unsafe.Add(ref o0, head * HeadDim);

                        // scores[p] = q·k[p] / sqrt(HeadDim)
                        for (int p = 0; p < positions; p++)
                        {
                            ref float kp = ref Unsafe.Add(ref headKeys, p * HeadDim);
            """);
        if (vectors > 0)
        {
            w.Line("                Vector256<float> dot = Vector256.LoadUnsafe(ref qh) * Vector256.LoadUnsafe(ref kp);");
            for (int i = 1; i < vectors; i++)
                w.Line($"                dot = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qh, {i * Width}), Vector256.LoadUnsafe(ref kp, {i * Width}), dot);");
            w.Line("                Unsafe.Add(ref s0, p) = Vector256.Sum(dot) * Scale;");
        }
        else
        {
            w.Line("""
                                float dot = 0f;
                                for (int i = 0; i < HeadDim; i++)
                                    dot += Unsafe.Add(ref qh, i) * Unsafe.Add(ref kp, i);
                                Unsafe.Add(ref s0, p) = dot * Scale;
                """);
        }
        w.Line("""
                        }
                        Softmax(scores.Slice(0, positions));

                        // output = Σ_p scores[p]·v[p]
            """);
        if (outputInRegisters)
        {
            string[] acc = Enumerable.Range(0, vectors).Select(i => $"acc{i}").ToArray();
            w.Line($"            Vector256<float> {string.Join(", ", acc.Select(a => a + " = Vector256<float>.Zero"))};");
            w.Line("            for (int p = 0; p < positions; p++)");
            w.Line("            {");
            w.Line("                Vector256<float> weight = Vector256.Create(Unsafe.Add(ref s0, p));");
            w.Line("                ref float vp = ref Unsafe.Add(ref headValues, p * HeadDim);");
            for (int i = 0; i < vectors; i++)
                w.Line($"                {acc[i]} = Vector256.FusedMultiplyAdd(weight, Vector256.LoadUnsafe(ref vp{(i == 0 ? "" : $", {i * Width}")}), {acc[i]});");
            w.Line("            }");
            for (int i = 0; i < vectors; i++)
                w.Line($"            {acc[i]}.StoreUnsafe(ref oh{(i == 0 ? "" : $", {i * Width}")});");
        }
        else
        {
            w.Line($$"""
                            output.Slice(head * HeadDim, HeadDim).Clear();
                            for (int p = 0; p < positions; p++)
                            {
                                float weight = Unsafe.Add(ref s0, p);
                                ref float vp = ref Unsafe.Add(ref headValues, p * HeadDim);
                """);
            if (vectors > 0)
            {
                w.Line("""
                                    for (int i = 0; i < HeadDim; i += 8)
                                        Vector256.FusedMultiplyAdd(Vector256.Create(weight), Vector256.LoadUnsafe(ref vp, (nuint)i), Vector256.LoadUnsafe(ref oh, (nuint)i)).StoreUnsafe(ref oh, (nuint)i);
                    """);
            }
            else
            {
                w.Line("""
                                    for (int i = 0; i < HeadDim; i++)
                                        Unsafe.Add(ref oh, i) += weight * Unsafe.Add(ref vp, i);
                    """);
            }
            w.Line("            }");
        }
        w.Line("""
                    }
                }
            }
            """);
    }

    private static void WriteSwiGlu(SourceWriter w)
    {
        w.Line("""
            /// <summary>gate = SiLU(gate) ⊙ up = gate / (1 + exp(-gate)) ⊙ up, over gate's length ([tokens, IntermediateSize]).</summary>
            public static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
            {
                if (up.Length < gate.Length)
                    throw new ArgumentException("SwiGlu: up is shorter than gate.");
                ref float g0 = ref MemoryMarshal.GetReference(gate);
                ref float u0 = ref MemoryMarshal.GetReference(up);
                int i = 0;
                for (; i + 8 <= gate.Length; i += 8)
                {
                    Vector256<float> g = Vector256.LoadUnsafe(ref g0, (nuint)i);
                    (g / (Vector256<float>.One + Vector256.Exp(-g)) * Vector256.LoadUnsafe(ref u0, (nuint)i)).StoreUnsafe(ref g0, (nuint)i);
                }
                for (; i < gate.Length; i++)
                {
                    float g = Unsafe.Add(ref g0, i);
                    Unsafe.Add(ref g0, i) = g / (1f + MathF.Exp(-g)) * Unsafe.Add(ref u0, i);
                }
            }
            """);
    }
}

using System.Linq;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// The attention of one token over the KV cache (AttentionHeads): one variant per head layout, grouped-query attention
/// with one pass over the cache per KV head, or one query head per KV head with its output sums in registers when they fit.
/// </summary>
internal static class AttentionEmitter
{
    private const int Width = KernelEmitter.Width; // floats per Vector256

    public static void Write(SourceWriter w, ModelSpec s)
    {
        if (s.GroupSize > 1)
        {
            WriteGroupedAttention(w, s);
            return;
        }
        int vectors = s.HeadDim % Width == 0 ? s.HeadDim / Width : 0;
        // Up to 8 output vectors stay in registers across the positions; wider heads accumulate in memory.
        bool outputInRegisters = vectors > 0 && vectors <= 8;
        w.Line($$"""
            /// <summary>
            /// Attention of one token over cache positions [0, positions): for each KV head in [kvHeadStart, kvHeadEnd)
            /// of KvHeadCount={{s.KvHeadCount}}, the GroupSize={{s.GroupSize}} query heads that share it (grouped-query attention).
            /// q, output: [QueryDim={{s.QueryDim}}]; keys, values: one layer's cache [KvHeadCount, MaxContext, HeadDim={{s.HeadDim}}];
            /// scores: [MaxContext] scratch.
            /// </summary>
            {{AttentionPrologue(s, "positions")}}
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
                        KernelMath.Softmax(scores.Slice(0, positions));

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

    /// <summary>
    /// The start of both attention kernels up to the loop over KV heads: the signature, the one bounds check
    /// (<paramref name="scoresLength"/> is what the variant needs of its scratch), the refs.
    /// </summary>
    private static string AttentionPrologue(ModelSpec s, string scoresLength) => $$"""
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void AttentionHeads(ReadOnlySpan<float> q, ReadOnlySpan<float> keys, ReadOnlySpan<float> values, int positions, Span<float> scores, Span<float> output, int kvHeadStart, int kvHeadEnd)
        {
            if (kvHeadStart < 0 || kvHeadEnd > KvHeadCount || q.Length < QueryDim || output.Length < QueryDim || keys.Length < KvHeadCount * MaxContext * HeadDim
                || values.Length < KvHeadCount * MaxContext * HeadDim || positions < 1 || positions > MaxContext || scores.Length < {{scoresLength}})
                throw new ArgumentException("Attention: a buffer is smaller than its shape.");
            const float Scale = {{Emitter.Float((float)(1.0 / System.Math.Sqrt(s.HeadDim)))}}; // 1 / sqrt(HeadDim)
            ref float q0 = ref MemoryMarshal.GetReference(q);
            ref float k0 = ref MemoryMarshal.GetReference(keys);
            ref float v0 = ref MemoryMarshal.GetReference(values);
            ref float s0 = ref MemoryMarshal.GetReference(scores);
            ref float o0 = ref MemoryMarshal.GetReference(output);
            for (int kvHead = kvHeadStart; kvHead < kvHeadEnd; kvHead++)
            {
                ref float headKeys = ref Unsafe.Add(ref k0, kvHead * MaxContext * HeadDim);
                ref float headValues = ref Unsafe.Add(ref v0, kvHead * MaxContext * HeadDim);
        """;

    /// <summary>
    /// Grouped-query attention with one pass over the KV cache per KV head: each key and value is loaded
    /// once for all GroupSize query heads that share it.
    /// </summary>
    private static void WriteGroupedAttention(SourceWriter w, ModelSpec s)
    {
        bool vectorized = s.HeadDim % Width == 0;
        w.Line($$"""
            /// <summary>
            /// Attention of one token over cache positions [0, positions) for the KV heads in [kvHeadStart, kvHeadEnd) of
            /// KvHeadCount={{s.KvHeadCount}}: one pass over each KV head's keys and one over its values serve all GroupSize={{s.GroupSize}}
            /// query heads that share it. q, output: [QueryDim={{s.QueryDim}}]; keys, values: one layer's cache
            /// [KvHeadCount, MaxContext, HeadDim={{s.HeadDim}}]; scores: [GroupSize, MaxContext] scratch.
            /// </summary>
            {{AttentionPrologue(s, "GroupSize * MaxContext")}}
                    ref float groupQ = ref Unsafe.Add(ref q0, kvHead * GroupSize * HeadDim);   // [GroupSize, HeadDim]
                    ref float groupOut = ref Unsafe.Add(ref o0, kvHead * GroupSize * HeadDim); // [GroupSize, HeadDim]

                    // scores[g, p] = q_g·k[p] / sqrt(HeadDim)
                    for (int p = 0; p < positions; p++)
                    {
                        ref float kp = ref Unsafe.Add(ref headKeys, p * HeadDim);
                        for (int g = 0; g < GroupSize; g++)
                        {
                            ref float qg = ref Unsafe.Add(ref groupQ, g * HeadDim);
            """);
        if (vectorized)
        {
            w.Line("""
                                Vector256<float> dot = Vector256<float>.Zero;
                                for (int i = 0; i < HeadDim; i += 8)
                                    dot = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qg, (nuint)i), Vector256.LoadUnsafe(ref kp, (nuint)i), dot);
                                Unsafe.Add(ref s0, g * MaxContext + p) = Vector256.Sum(dot) * Scale;
                """);
        }
        else
        {
            w.Line("""
                                float dot = 0f;
                                for (int i = 0; i < HeadDim; i++)
                                    dot += Unsafe.Add(ref qg, i) * Unsafe.Add(ref kp, i);
                                Unsafe.Add(ref s0, g * MaxContext + p) = dot * Scale;
                """);
        }
        w.Line("""
                        }
                    }
                    for (int g = 0; g < GroupSize; g++)
                        KernelMath.Softmax(scores.Slice(g * MaxContext, positions));

                    // output_g = Σ_p scores[g, p]·v[p], accumulated in the output rows
                    output.Slice(kvHead * GroupSize * HeadDim, GroupSize * HeadDim).Clear();
                    for (int p = 0; p < positions; p++)
                    {
                        ref float vp = ref Unsafe.Add(ref headValues, p * HeadDim);
                        for (int g = 0; g < GroupSize; g++)
                        {
                            ref float og = ref Unsafe.Add(ref groupOut, g * HeadDim);
            """);
        if (vectorized)
        {
            w.Line("""
                                Vector256<float> weight = Vector256.Create(Unsafe.Add(ref s0, g * MaxContext + p));
                                for (int i = 0; i < HeadDim; i += 8)
                                    Vector256.FusedMultiplyAdd(weight, Vector256.LoadUnsafe(ref vp, (nuint)i), Vector256.LoadUnsafe(ref og, (nuint)i)).StoreUnsafe(ref og, (nuint)i);
                """);
        }
        else
        {
            w.Line("""
                                float weight = Unsafe.Add(ref s0, g * MaxContext + p);
                                for (int i = 0; i < HeadDim; i++)
                                    Unsafe.Add(ref og, i) += weight * Unsafe.Add(ref vp, i);
                """);
        }
        w.Line("""
                        }
                    }
                }
            }
            """);
    }
}

using System;
using System.Linq;
using Llama.Compiled.Generator.Model;

namespace Llama.Compiled.Generator;

/// <summary>
/// The attention of one token over its sequence's KV cache (AttentionHeads): the positions in tiles, each key and value row
/// read once for all query heads of its KV head (grouped-query attention), with an online softmax so that the scratch is one
/// tile per thread however long the context; the cache hands out tiles as floats whatever its <c>KvCacheFormat</c>.
/// </summary>
internal static class AttentionEmitter
{
    private const int Width = KernelEmitter.Width; // floats per Vector256

    /// <summary>
    /// Positions per tile: a key tile and a value tile of F32 rows take at most 32 KB, so an F16 or Q8_0 cache's widened
    /// tiles stay in L1 while all GroupSize query heads read them; 16 to 256 positions, a multiple of 8.
    /// </summary>
    public static int TileRows(ModelSpec s) => Math.Max(16, Math.Min(256, 4096 / s.HeadDim / 8 * 8));

    /// <summary>Floats of one thread's attention scratch: GroupSize·AttentionTile scores, then a key tile and a value tile.</summary>
    public static int ScratchFloats(ModelSpec s) => s.GroupSize * TileRows(s) + 2 * TileRows(s) * s.HeadDim;

    public static void Write(SourceWriter w, ModelSpec s)
    {
        int vectors = s.HeadDim % Width == 0 ? s.HeadDim / Width : 0;
        // Up to 8 vectors of a key row (for the dot products) or of an output row (for the weighted sum) stay in registers.
        bool registers = vectors > 0 && vectors <= 8;
        int tile = TileRows(s);
        w.Line($$"""
            /// <summary>Cache positions per attention tile: a key tile and a value tile of [AttentionTile, HeadDim={{s.HeadDim}}] floats stay in L1.</summary>
            private const int AttentionTile = {{tile}};
            /// <summary>Floats of one thread's attention scratch: scores [GroupSize={{s.GroupSize}}, AttentionTile], key tile and value tile [AttentionTile, HeadDim].</summary>
            internal const int AttentionScratch = GroupSize * AttentionTile + 2 * AttentionTile * HeadDim;

            /// <summary>
            /// Attention of one token over cache positions [0, positions) for the KV heads in [kvHeadStart, kvHeadEnd) of
            /// KvHeadCount={{s.KvHeadCount}}, tile by tile: each key and value row is read once for all GroupSize={{s.GroupSize}} query heads
            /// that share it, and an online softmax (a running maximum and sum per query head, the output rescaled when the maximum
            /// grows) keeps the scratch one tile long. q, output: [QueryDim={{s.QueryDim}}]; cache: the sequence's KV cache, layer
            /// <paramref name="layer"/> (an F32 cache's tiles are read in place, F16 and Q8_0 tiles widened into the scratch);
            /// scratch: [AttentionScratch={{ScratchFloats(s)}}].
            /// </summary>
            [MethodImpl(MethodImplOptions.AggressiveOptimization)]
            private static void AttentionHeads(ReadOnlySpan<float> q, KvCache cache, int layer, int positions, Span<float> scratch, Span<float> output, int kvHeadStart, int kvHeadEnd)
            {
                if (kvHeadStart < 0 || kvHeadEnd > KvHeadCount || q.Length < QueryDim || output.Length < QueryDim || cache.KvHeadCount != KvHeadCount
                    || cache.HeadDim != HeadDim || positions < 1 || positions > cache.MaxContext || scratch.Length < AttentionScratch)
                    throw new ArgumentException("Attention: a buffer is smaller than its shape.");
                const float Scale = {{Emitter.Float((float)(1.0 / Math.Sqrt(s.HeadDim)))}}; // 1 / sqrt(HeadDim)
                Span<float> scores = scratch.Slice(0, GroupSize * AttentionTile);                                   // [GroupSize, AttentionTile]
                Span<float> keyTile = scratch.Slice(GroupSize * AttentionTile, AttentionTile * HeadDim);              // [AttentionTile, HeadDim]
                Span<float> valueTile = scratch.Slice(GroupSize * AttentionTile + AttentionTile * HeadDim, AttentionTile * HeadDim); // [AttentionTile, HeadDim]
                Span<float> maxima = stackalloc float[GroupSize]; // running max of each query head's scores
                Span<float> sums = stackalloc float[GroupSize];   // running Σ e^(score − max)
                ref float q0 = ref MemoryMarshal.GetReference(q);
                ref float o0 = ref MemoryMarshal.GetReference(output);
                ref float s0 = ref MemoryMarshal.GetReference(scores);
                for (int kvHead = kvHeadStart; kvHead < kvHeadEnd; kvHead++)
                {
                    ref float groupQ = ref Unsafe.Add(ref q0, kvHead * GroupSize * HeadDim);   // [GroupSize, HeadDim]
                    ref float groupOut = ref Unsafe.Add(ref o0, kvHead * GroupSize * HeadDim); // [GroupSize, HeadDim]
                    output.Slice(kvHead * GroupSize * HeadDim, GroupSize * HeadDim).Clear();
                    maxima.Fill(float.NegativeInfinity);
                    sums.Clear();
                    for (int start = 0; start < positions; start += AttentionTile)
                    {
                        int count = Math.Min(AttentionTile, positions - start);
                        ref float keys = ref MemoryMarshal.GetReference(cache.KeyTile(layer, kvHead, start, count, keyTile)); // [count, HeadDim]

                        // scores[g, j] = q_g·k[start + j] / sqrt(HeadDim), {{(registers ? "the key row in registers for" : "one key row at a time for")}} all GroupSize query heads
                        for (int j = 0; j < count; j++)
                        {
                            ref float kj = ref Unsafe.Add(ref keys, j * HeadDim);
            """);
        if (registers)
        {
            w.Line($"                Vector256<float> {string.Join(", ", Enumerable.Range(0, vectors).Select(i => $"k{i} = Vector256.LoadUnsafe(ref kj{Offset(i)})"))};");
            w.Line("                for (int g = 0; g < GroupSize; g++)");
            w.Line("                {");
            w.Line("                    ref float qg = ref Unsafe.Add(ref groupQ, g * HeadDim);");
            w.Line("                    Vector256<float> dot = Vector256.LoadUnsafe(ref qg) * k0;");
            for (int i = 1; i < vectors; i++)
                w.Line($"                    dot = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qg, {i * Width}), k{i}, dot);");
            w.Line("                    Unsafe.Add(ref s0, g * AttentionTile + j) = Vector256.Sum(dot) * Scale;");
            w.Line("                }");
        }
        else
        {
            w.Line("""
                                for (int g = 0; g < GroupSize; g++)
                                {
                                    ref float qg = ref Unsafe.Add(ref groupQ, g * HeadDim);
                """);
            w.Line(vectors > 0
                ? """
                                        Vector256<float> dot = Vector256<float>.Zero;
                                        for (int i = 0; i < HeadDim; i += 8)
                                            dot = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qg, (nuint)i), Vector256.LoadUnsafe(ref kj, (nuint)i), dot);
                                        Unsafe.Add(ref s0, g * AttentionTile + j) = Vector256.Sum(dot) * Scale;
                    """
                : """
                                        float dot = 0f;
                                        for (int i = 0; i < HeadDim; i++)
                                            dot += Unsafe.Add(ref qg, i) * Unsafe.Add(ref kj, i);
                                        Unsafe.Add(ref s0, g * AttentionTile + j) = dot * Scale;
                    """);
            w.Line("                }");
        }
        w.Line("""
                        }

                        // Online softmax: scores[g, j] becomes e^(score − running max); when the max grows, what the earlier tiles
                        // added to the sum and to the output row is rescaled by e^(old max − new max) (0 on the first tile).
                        for (int g = 0; g < GroupSize; g++)
                        {
                            Span<float> row = scores.Slice(g * AttentionTile, count);
                            float max = Math.Max(maxima[g], KernelMath.Max(row));
                            float rescale = KernelMath.Exp(maxima[g] - max);
                            sums[g] = sums[g] * rescale + KernelMath.SubtractExp(row, max);
                            maxima[g] = max;
                            if (rescale != 1f)
                                KernelMath.Multiply(output.Slice((kvHead * GroupSize + g) * HeadDim, HeadDim), rescale);
                        }

                        // output_g += Σ_j scores[g, j]·v[start + j]
                        ref float values = ref MemoryMarshal.GetReference(cache.ValueTile(layer, kvHead, start, count, valueTile)); // [count, HeadDim]
                        for (int g = 0; g < GroupSize; g++)
                        {
                            ref float og = ref Unsafe.Add(ref groupOut, g * HeadDim);
                            ref float weights = ref Unsafe.Add(ref s0, g * AttentionTile);
            """);
        if (registers)
        {
            // The output row in registers across the tile.
            string[] acc = Enumerable.Range(0, vectors).Select(i => $"acc{i}").ToArray();
            w.Line($"                Vector256<float> {string.Join(", ", acc.Select((a, i) => $"{a} = Vector256.LoadUnsafe(ref og{Offset(i)})"))};");
            w.Line("                for (int j = 0; j < count; j++)");
            w.Line("                {");
            w.Line("                    Vector256<float> weight = Vector256.Create(Unsafe.Add(ref weights, j));");
            w.Line("                    ref float vj = ref Unsafe.Add(ref values, j * HeadDim);");
            for (int i = 0; i < vectors; i++)
                w.Line($"                    {acc[i]} = Vector256.FusedMultiplyAdd(weight, Vector256.LoadUnsafe(ref vj{Offset(i)}), {acc[i]});");
            w.Line("                }");
            for (int i = 0; i < vectors; i++)
                w.Line($"                {acc[i]}.StoreUnsafe(ref og{Offset(i)});");
        }
        else
        {
            w.Line("""
                                for (int j = 0; j < count; j++)
                                {
                                    float weight = Unsafe.Add(ref weights, j);
                                    ref float vj = ref Unsafe.Add(ref values, j * HeadDim);
                """);
            w.Line(vectors > 0
                ? """
                                        for (int i = 0; i < HeadDim; i += 8)
                                            Vector256.FusedMultiplyAdd(Vector256.Create(weight), Vector256.LoadUnsafe(ref vj, (nuint)i), Vector256.LoadUnsafe(ref og, (nuint)i)).StoreUnsafe(ref og, (nuint)i);
                    """
                : """
                                        for (int i = 0; i < HeadDim; i++)
                                            Unsafe.Add(ref og, i) += weight * Unsafe.Add(ref vj, i);
                    """);
            w.Line("                }");
        }
        w.Line("""
                        }
                    }
                    for (int g = 0; g < GroupSize; g++)
                        KernelMath.Multiply(output.Slice((kvHead * GroupSize + g) * HeadDim, HeadDim), 1f / sums[g]);
                }
            }
            """);
    }

    /// <summary>", 8" for vector <paramref name="i"/> of a row (nothing for the first).</summary>
    private static string Offset(int i) => i == 0 ? "" : $", {i * Width}";
}

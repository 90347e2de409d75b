using System;
using System.Collections.Generic;

namespace Llama.Compiled.Oracle.Tests;

// stories260K, the real model, compiled from its Hugging Face config in ../shared.
[LlamaModel("stories260K/hf/config.json")]
public partial class Stories260K;

[LlamaModel("stories260K/hf/config.json", Weights = WeightFormat.Q8_0)]
public partial class Stories260KQ8;

// Random-weight shapes: one config each under Models/, compiled as F32, Q8_0 and (where every
// matrix width is a multiple of 32) Q4_0.

/// <summary>GQA 1 (4/4 heads), head_dim 64, tied, vocab 512.</summary>
[LlamaModel("Models/gqa1-hd64-tied/config.json")]
public partial class Gqa1Hd64Tied;

[LlamaModel("Models/gqa1-hd64-tied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa1Hd64TiedQ8;

[LlamaModel("Models/gqa1-hd64-tied/config.json", Weights = WeightFormat.Q4_0)]
public partial class Gqa1Hd64TiedQ4;

/// <summary>GQA 2 (8/4 heads), head_dim 8, untied, vocab 1000 (not a multiple of 32).</summary>
[LlamaModel("Models/gqa2-hd8-untied/config.json")]
public partial class Gqa2Hd8Untied;

[LlamaModel("Models/gqa2-hd8-untied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa2Hd8UntiedQ8;

[LlamaModel("Models/gqa2-hd8-untied/config.json", Weights = WeightFormat.Q4_0)]
public partial class Gqa2Hd8UntiedQ4;

/// <summary>GQA 4 (4/1 heads), head_dim 128, tied, vocab 2048.</summary>
[LlamaModel("Models/gqa4-hd128-tied/config.json")]
public partial class Gqa4Hd128Tied;

[LlamaModel("Models/gqa4-hd128-tied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa4Hd128TiedQ8;

[LlamaModel("Models/gqa4-hd128-tied/config.json", Weights = WeightFormat.Q4_0)]
public partial class Gqa4Hd128TiedQ4;

/// <summary>GQA 8 (8/1 heads), head_dim 64, untied, vocab 4096.</summary>
[LlamaModel("Models/gqa8-hd64-untied/config.json")]
public partial class Gqa8Hd64Untied;

[LlamaModel("Models/gqa8-hd64-untied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa8Hd64UntiedQ8;

[LlamaModel("Models/gqa8-hd64-untied/config.json", Weights = WeightFormat.Q4_0)]
public partial class Gqa8Hd64UntiedQ4;

/// <summary>GQA 1 (2/2 heads), head_dim 128, tied, vocab 32000 (the Llama 2 vocabulary size).</summary>
[LlamaModel("Models/gqa1-hd128-v32000-tied/config.json")]
public partial class Gqa1Hd128V32000Tied;

[LlamaModel("Models/gqa1-hd128-v32000-tied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa1Hd128V32000TiedQ8;

[LlamaModel("Models/gqa1-hd128-v32000-tied/config.json", Weights = WeightFormat.Q4_0)]
public partial class Gqa1Hd128V32000TiedQ4;

/// <summary>GQA 2 (4/2 heads), head_dim 64, untied, vocab 3000, FFN 672.</summary>
[LlamaModel("Models/gqa2-hd64-untied/config.json")]
public partial class Gqa2Hd64Untied;

[LlamaModel("Models/gqa2-hd64-untied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa2Hd64UntiedQ8;

[LlamaModel("Models/gqa2-hd64-untied/config.json", Weights = WeightFormat.Q4_0)]
public partial class Gqa2Hd64UntiedQ4;

/// <summary>
/// GQA 3 (9/3 heads), head_dim 32, untied, vocab 800, hidden 288, FFN 928: rows of 9 and 29 blocks, so the
/// quantized kernels' last group is 8 blocks as one step plus 1, and 8 plus 5 single blocks.
/// </summary>
[LlamaModel("Models/gqa3-hd32-h288-ffn928-untied/config.json")]
public partial class Gqa3Hd32H288Ffn928Untied;

[LlamaModel("Models/gqa3-hd32-h288-ffn928-untied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa3Hd32H288Ffn928UntiedQ8;

[LlamaModel("Models/gqa3-hd32-h288-ffn928-untied/config.json", Weights = WeightFormat.Q4_0)]
public partial class Gqa3Hd32H288Ffn928UntiedQ4;

/// <summary>
/// GQA 4 (16/4 heads), head_dim 64, tied, hidden 1024, vocab 32000: 46 MB of Q8_0 matrices (25 MB as Q4_0), more than the
/// planner's 32 MB cache budget, so the Q8_0 class compiles the streaming decode (prefetching rows ahead).
/// </summary>
[LlamaModel("Models/gqa4-hd64-h1024-v32000-tied/config.json")]
public partial class Gqa4Hd64H1024V32000Tied;

[LlamaModel("Models/gqa4-hd64-h1024-v32000-tied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa4Hd64H1024V32000TiedQ8;

[LlamaModel("Models/gqa4-hd64-h1024-v32000-tied/config.json", Weights = WeightFormat.Q4_0)]
public partial class Gqa4Hd64H1024V32000TiedQ4;

/// <summary>
/// GQA 4 (16/4 heads), head_dim 8, tied, FFN 344: down_proj's 344 columns are not 32-blocks, so the
/// quantized file stores it as F16 (as llama.cpp's converter does) and the Q8_0 model computes it in F32.
/// </summary>
[LlamaModel("Models/gqa4-hd8-ffn344-tied/config.json")]
public partial class Gqa4Hd8Ffn344Tied;

[LlamaModel("Models/gqa4-hd8-ffn344-tied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa4Hd8Ffn344TiedQ8;

/// <summary>
/// GQA 2 (4/2 heads), head_dim 64, untied, hidden 256, FFN 768, vocab 1024, 4 layers: every width a multiple of 256, so
/// llama.cpp's K-quant mixes apply without fallbacks, and 4 layers give its Q4_K_M both Q4_K and Q6_K attn_v/ffn_down
/// (layers 2 and 3 get more bits); see <see cref="LlamaCppQuantizedFiles"/>.
/// </summary>
[LlamaModel("Models/gqa2-hd64-ffn768-l4-untied/config.json")]
public partial class Gqa2Hd64Ffn768L4Untied;

[LlamaModel("Models/gqa2-hd64-ffn768-l4-untied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Gqa2Hd64Ffn768L4UntiedQ8;

[LlamaModel("Models/gqa2-hd64-ffn768-l4-untied/config.json", Weights = WeightFormat.Q4_0)]
public partial class Gqa2Hd64Ffn768L4UntiedQ4;

/// <summary>
/// qwen2 (Qwen2ForCausalLM): GQA 2 (4/2 heads), head_dim 64, untied, hidden 256, FFN 768, vocab 1024, 4 layers, θ 1e6, with
/// q/k/v biases; written as a qwen2 GGUF (rows in Hugging Face's order, llama.cpp's NEOX rotation, bias vectors). Every
/// width a multiple of 256, as <see cref="Gqa2Hd64Ffn768L4Untied"/>, so llama.cpp's K-quant mixes apply without fallbacks.
/// </summary>
[LlamaModel("Models/qwen2-gqa2-h256-ffn768-biases/config.json")]
public partial class Qwen2Gqa2H256Ffn768Biases;

[LlamaModel("Models/qwen2-gqa2-h256-ffn768-biases/config.json", Weights = WeightFormat.Q8_0)]
public partial class Qwen2Gqa2H256Ffn768BiasesQ8;

[LlamaModel("Models/qwen2-gqa2-h256-ffn768-biases/config.json", Weights = WeightFormat.Q4_0)]
public partial class Qwen2Gqa2H256Ffn768BiasesQ4;

/// <summary>
/// qwen2 at Qwen2.5-0.5B's widths (hidden 896, 14/2 heads of 64, FFN 4864), 2 layers, tied, vocab 1024, with q/k/v biases:
/// 896 is not a multiple of 256, so llama.cpp's K-quant mixes fall back to Q5_0/Q5_1/Q8_0 for the rows of that width
/// (the tied classifier included) and keep K formats for ffn_down's 4864-wide rows.
/// </summary>
[LlamaModel("Models/qwen2-gqa7-h896-ffn4864-l2-tied/config.json")]
public partial class Qwen2Gqa7H896Ffn4864L2Tied;

[LlamaModel("Models/qwen2-gqa7-h896-ffn4864-l2-tied/config.json", Weights = WeightFormat.Q8_0)]
public partial class Qwen2Gqa7H896Ffn4864L2TiedQ8;

[LlamaModel("Models/qwen2-gqa7-h896-ffn4864-l2-tied/config.json", Weights = WeightFormat.Q4_0)]
public partial class Qwen2Gqa7H896Ffn4864L2TiedQ4;

/// <summary>A compiled shape and its compiled classes, by compute format.</summary>
/// <param name="Name">The folder under Models/.</param>
/// <param name="Shape">The compiled constants (all formats share them).</param>
/// <param name="Seed">Seed of the random weights.</param>
/// <param name="Loaders">Load(path) of the class compiled for each format.</param>
/// <param name="Architecture">The config's model_type, which its GGUF files are written as (<c>general.architecture</c>).</param>
public sealed record OracleShape(string Name, LlamaModelShape Shape, int Seed, IReadOnlyDictionary<WeightFormat, Func<string, ILlamaModel>> Loaders,
    string Architecture)
{
    public override string ToString() => Name;
}

/// <summary>Every random-weight shape the oracle tests run.</summary>
public static class OracleShapes
{
    public static IReadOnlyList<OracleShape> All { get; } =
    [
        Make("gqa1-hd64-tied", Gqa1Hd64Tied.CompiledShape, 101, Gqa1Hd64Tied.Load, Gqa1Hd64TiedQ8.Load, Gqa1Hd64TiedQ4.Load),
        Make("gqa2-hd8-untied", Gqa2Hd8Untied.CompiledShape, 102, Gqa2Hd8Untied.Load, Gqa2Hd8UntiedQ8.Load, Gqa2Hd8UntiedQ4.Load),
        Make("gqa4-hd128-tied", Gqa4Hd128Tied.CompiledShape, 103, Gqa4Hd128Tied.Load, Gqa4Hd128TiedQ8.Load, Gqa4Hd128TiedQ4.Load),
        Make("gqa8-hd64-untied", Gqa8Hd64Untied.CompiledShape, 104, Gqa8Hd64Untied.Load, Gqa8Hd64UntiedQ8.Load, Gqa8Hd64UntiedQ4.Load),
        Make("gqa1-hd128-v32000-tied", Gqa1Hd128V32000Tied.CompiledShape, 105, Gqa1Hd128V32000Tied.Load, Gqa1Hd128V32000TiedQ8.Load, Gqa1Hd128V32000TiedQ4.Load),
        Make("gqa2-hd64-untied", Gqa2Hd64Untied.CompiledShape, 106, Gqa2Hd64Untied.Load, Gqa2Hd64UntiedQ8.Load, Gqa2Hd64UntiedQ4.Load),
        Make("gqa3-hd32-h288-ffn928-untied", Gqa3Hd32H288Ffn928Untied.CompiledShape, 108, Gqa3Hd32H288Ffn928Untied.Load, Gqa3Hd32H288Ffn928UntiedQ8.Load, Gqa3Hd32H288Ffn928UntiedQ4.Load),
        Make("gqa4-hd64-h1024-v32000-tied", Gqa4Hd64H1024V32000Tied.CompiledShape, 109, Gqa4Hd64H1024V32000Tied.Load, Gqa4Hd64H1024V32000TiedQ8.Load, Gqa4Hd64H1024V32000TiedQ4.Load),
        Make("gqa4-hd8-ffn344-tied", Gqa4Hd8Ffn344Tied.CompiledShape, 107, Gqa4Hd8Ffn344Tied.Load, Gqa4Hd8Ffn344TiedQ8.Load, null),
        Make("gqa2-hd64-ffn768-l4-untied", Gqa2Hd64Ffn768L4Untied.CompiledShape, 110, Gqa2Hd64Ffn768L4Untied.Load, Gqa2Hd64Ffn768L4UntiedQ8.Load, Gqa2Hd64Ffn768L4UntiedQ4.Load),
        Make("qwen2-gqa2-h256-ffn768-biases", Qwen2Gqa2H256Ffn768Biases.CompiledShape, 111, Qwen2Gqa2H256Ffn768Biases.Load, Qwen2Gqa2H256Ffn768BiasesQ8.Load, Qwen2Gqa2H256Ffn768BiasesQ4.Load, "qwen2"),
        Make("qwen2-gqa7-h896-ffn4864-l2-tied", Qwen2Gqa7H896Ffn4864L2Tied.CompiledShape, 112, Qwen2Gqa7H896Ffn4864L2Tied.Load, Qwen2Gqa7H896Ffn4864L2TiedQ8.Load, Qwen2Gqa7H896Ffn4864L2TiedQ4.Load, "qwen2"),
    ];

    public static OracleShape Get(string name)
    {
        foreach (OracleShape shape in All)
        {
            if (shape.Name == name)
                return shape;
        }
        throw new ArgumentException($"no oracle shape named {name}", nameof(name));
    }

    private static OracleShape Make(string name, LlamaModelShape shape, int seed,
        Func<string, ILlamaModel> f32, Func<string, ILlamaModel> q8, Func<string, ILlamaModel>? q4, string architecture = "llama")
    {
        var loaders = new Dictionary<WeightFormat, Func<string, ILlamaModel>>
        {
            [WeightFormat.F32] = f32,
            [WeightFormat.Q8_0] = q8,
        };
        if (q4 is not null)
            loaders[WeightFormat.Q4_0] = q4;
        return new OracleShape(name, shape, seed, loaders, architecture);
    }
}

/// <summary>Llama 3's vocabulary (128,256) on a tiny random-weight body: the byte-level tokenizer tests' model.</summary>
[LlamaModel("Models/llama3-bpe/config.json")]
public partial class Llama3Bpe;

/// <summary>
/// Qwen2's padded vocabulary (151,936 rows for 151,669 ids), GQA, tied, θ 1e6, on a tiny random-weight body
/// (as a llama-architecture file, without qwen2's q/k/v biases: what is tested here is the vocabulary).
/// </summary>
[LlamaModel("Models/qwen2-bpe/config.json")]
public partial class Qwen2Bpe;

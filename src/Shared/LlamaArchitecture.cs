// Linked into both the generator (netstandard2.0) and the runtime (net10.0), as llama.cpp's llama-arch is into its
// loader and converter: the one place that says which model types exist, what their tensors are called in each file
// format, and how the block formats are laid out. Keep it to plain C# that compiles for netstandard2.0.

namespace Llama.Compiled;

/// <summary>A tensor of a LLaMA-family model, by role.</summary>
internal enum LlamaTensor
{
    TokenEmbedding,
    FinalNorm,
    Classifier,
    AttentionNorm,
    Query,
    Key,
    Value,
    AttentionOutput,
    FeedForwardNorm,
    Gate,
    Up,
    Down,
}

/// <summary>The architecture table: model types, tensor names per file format, bias tensors, block layouts.</summary>
internal static class LlamaArchitecture
{
    /// <summary>config.json <c>model_type</c>s (and GGUF <c>general.architecture</c>s) the compiler runs.</summary>
    public static readonly string[] ModelTypes = { "llama", "mistral", "qwen2" };

    /// <summary>Qwen2 has q/k/v biases whatever its config says (transformers hard-codes them).</summary>
    public static bool HasQkvBias(string modelType) => modelType == "qwen2";

    /// <summary>
    /// GGUF files of this architecture store q/k rows permuted for adjacent-pair RoPE (llama.cpp's converter does this
    /// for llama and mistral); qwen2 keeps the Hugging Face order (NEOX rotation, pairs (j, j + d/2)).
    /// </summary>
    public static bool GgufRotatesAdjacentPairs(string architecture) => architecture is "llama" or "mistral";

    /// <summary>The per-layer tensors, in the order llama.cpp writes them.</summary>
    public static readonly LlamaTensor[] LayerTensors =
    {
        LlamaTensor.AttentionNorm, LlamaTensor.Query, LlamaTensor.Key, LlamaTensor.Value, LlamaTensor.AttentionOutput,
        LlamaTensor.FeedForwardNorm, LlamaTensor.Gate, LlamaTensor.Up, LlamaTensor.Down,
    };

    /// <summary>True for the tensors of one layer (named with a layer number).</summary>
    public static bool IsPerLayer(LlamaTensor tensor) => tensor >= LlamaTensor.AttentionNorm;

    /// <summary>The Hugging Face name without the layer prefix and without ".weight"/".bias".</summary>
    public static string HuggingFaceStem(LlamaTensor tensor) => tensor switch
    {
        LlamaTensor.TokenEmbedding => "model.embed_tokens",
        LlamaTensor.FinalNorm => "model.norm",
        LlamaTensor.Classifier => "lm_head",
        LlamaTensor.AttentionNorm => "input_layernorm",
        LlamaTensor.Query => "self_attn.q_proj",
        LlamaTensor.Key => "self_attn.k_proj",
        LlamaTensor.Value => "self_attn.v_proj",
        LlamaTensor.AttentionOutput => "self_attn.o_proj",
        LlamaTensor.FeedForwardNorm => "post_attention_layernorm",
        LlamaTensor.Gate => "mlp.gate_proj",
        LlamaTensor.Up => "mlp.up_proj",
        _ => "mlp.down_proj",
    };

    /// <summary>The GGUF name without the layer prefix and without ".weight"/".bias".</summary>
    public static string GgufStem(LlamaTensor tensor) => tensor switch
    {
        LlamaTensor.TokenEmbedding => "token_embd",
        LlamaTensor.FinalNorm => "output_norm",
        LlamaTensor.Classifier => "output",
        LlamaTensor.AttentionNorm => "attn_norm",
        LlamaTensor.Query => "attn_q",
        LlamaTensor.Key => "attn_k",
        LlamaTensor.Value => "attn_v",
        LlamaTensor.AttentionOutput => "attn_output",
        LlamaTensor.FeedForwardNorm => "ffn_norm",
        LlamaTensor.Gate => "ffn_gate",
        LlamaTensor.Up => "ffn_up",
        _ => "ffn_down",
    };

    /// <summary>
    /// The llama2.c checkpoint's array of this tensor (run.c's names), in its file order: token_embedding_table,
    /// rms_att_weight, wq, wk, wv, wo, rms_ffn_weight, w1, w2, w3, rms_final_weight, (freq_cis), wcls.
    /// </summary>
    public static readonly LlamaTensor[] Llama2cOrder =
    {
        LlamaTensor.TokenEmbedding, LlamaTensor.AttentionNorm, LlamaTensor.Query, LlamaTensor.Key, LlamaTensor.Value,
        LlamaTensor.AttentionOutput, LlamaTensor.FeedForwardNorm, LlamaTensor.Gate, LlamaTensor.Down, LlamaTensor.Up,
        LlamaTensor.FinalNorm, LlamaTensor.Classifier,
    };

    /// <summary>"model.layers.{layer}." — the Hugging Face prefix of a layer's tensors.</summary>
    public static string HuggingFaceLayerPrefix(int layer) => "model.layers." + layer.ToString(System.Globalization.CultureInfo.InvariantCulture) + ".";

    /// <summary>"blk.{layer}." — the GGUF prefix of a layer's tensors.</summary>
    public static string GgufLayerPrefix(int layer) => "blk." + layer.ToString(System.Globalization.CultureInfo.InvariantCulture) + ".";

    /// <summary>The Hugging Face name of a weight (<paramref name="bias"/>: of its bias vector); <paramref name="layer"/> for per-layer tensors.</summary>
    public static string HuggingFaceName(LlamaTensor tensor, int layer = -1, bool bias = false) =>
        (IsPerLayer(tensor) ? HuggingFaceLayerPrefix(layer) : "") + HuggingFaceStem(tensor) + (bias ? ".bias" : ".weight");

    /// <summary>The GGUF name of a weight (<paramref name="bias"/>: of its bias vector); <paramref name="layer"/> for per-layer tensors.</summary>
    public static string GgufName(LlamaTensor tensor, int layer = -1, bool bias = false) =>
        (IsPerLayer(tensor) ? GgufLayerPrefix(layer) : "") + GgufStem(tensor) + (bias ? ".bias" : ".weight");

    /// <summary>Elements per block of every block format (Q8_0, Q4_0).</summary>
    public const int QuantBlockSize = 32;

    /// <summary>Bytes of a Q8_0 block: an F16 scale and 32 int8 weights.</summary>
    public const int Q8_0BlockBytes = 34;

    /// <summary>Bytes of a Q4_0 block: an F16 scale and 32 4-bit weights.</summary>
    public const int Q4_0BlockBytes = 18;

    /// <summary>
    /// Rows per group of the kernels' layout of Q8_0/Q4_0 matrices: a group interleaves its rows' blocks so that one
    /// 32-byte load holds 4 bytes of each of 8 rows, one int32 lane per row of a byte dot product.
    /// </summary>
    public const int KernelGroupRows = 8;
}

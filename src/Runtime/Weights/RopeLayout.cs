namespace Llama.Compiled;

/// <summary>
/// Which elements of a head RoPE rotates together. It follows from the weight file's format,
/// because converters permute the q/k projection rows to match their runtime's rotation.
/// </summary>
public enum RopeLayout
{
    /// <summary>Hugging Face safetensors: pairs (j, j + HeadDim/2) of each head.</summary>
    RotateHalf,

    /// <summary>llama2.c checkpoints and GGUF: adjacent pairs (2j, 2j + 1) of each head.</summary>
    AdjacentPairs,
}

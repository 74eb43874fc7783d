#!/usr/bin/env python3
"""Writes models/resnet50/deploy.prototxt: ResNet-50 (He et al. 2015) in the layout of the
original Caffe release (conv / BatchNorm use_global_stats / Scale bias_term, bottleneck blocks
3-4-6-3, projection shortcuts on the first block of each stage), for benchmarks.

    python3 bench/gen_resnet50.py > models/resnet50/deploy.prototxt
"""

out = []


def emit(s):
    out.append(s)


def conv(name, bottom, num, k, stride=1, pad=0, bias=False):
    emit(f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"\n'
         f'  convolution_param {{ num_output: {num} kernel_size: {k} stride: {stride} pad: {pad} '
         f'bias_term: {"true" if bias else "false"} }} }}')


def bn_scale(name, relu):
    emit(f'layer {{ name: "bn{name}" type: "BatchNorm" bottom: "res{name}" top: "res{name}"\n'
         f'  batch_norm_param {{ use_global_stats: true }} }}')
    emit(f'layer {{ name: "scale{name}" type: "Scale" bottom: "res{name}" top: "res{name}"\n'
         f'  scale_param {{ bias_term: true }} }}')
    if relu:
        emit(f'layer {{ name: "res{name}_relu" type: "ReLU" bottom: "res{name}" top: "res{name}" }}')


def block(stage, letter, bottom, mid, outc, stride, project):
    base = f'{stage}{letter}'
    if project:
        conv(f'res{base}_branch1', bottom, outc, 1, stride)
        bn_scale(f'{base}_branch1', False)
        short = f'res{base}_branch1'
    else:
        short = bottom
    conv(f'res{base}_branch2a', bottom, mid, 1, stride)
    bn_scale(f'{base}_branch2a', True)
    conv(f'res{base}_branch2b', f'res{base}_branch2a', mid, 3, 1, 1)
    bn_scale(f'{base}_branch2b', True)
    conv(f'res{base}_branch2c', f'res{base}_branch2b', outc, 1)
    bn_scale(f'{base}_branch2c', False)
    emit(f'layer {{ name: "res{base}" type: "Eltwise" bottom: "{short}" bottom: "res{base}_branch2c" '
         f'top: "res{base}" }}')
    emit(f'layer {{ name: "res{base}_relu" type: "ReLU" bottom: "res{base}" top: "res{base}" }}')
    return f'res{base}'


emit('# ResNet-50 in the original Caffe layout; written by bench/gen_resnet50.py (do not edit).')
emit('name: "ResNet-50"')
emit('layer { name: "data" type: "Input" top: "data"\n'
     '  input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } } }')
emit('layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"\n'
     '  convolution_param { num_output: 64 kernel_size: 7 stride: 2 pad: 3 } }')
emit('layer { name: "bn_conv1" type: "BatchNorm" bottom: "conv1" top: "conv1"\n'
     '  batch_norm_param { use_global_stats: true } }')
emit('layer { name: "scale_conv1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }')
emit('layer { name: "conv1_relu" type: "ReLU" bottom: "conv1" top: "conv1" }')
emit('layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"\n'
     '  pooling_param { kernel_size: 3 stride: 2 pool: MAX } }')
x = 'pool1'
for stage, n, mid, outc, stride in [(2, 3, 64, 256, 1), (3, 4, 128, 512, 2), (4, 6, 256, 1024, 2),
                                    (5, 3, 512, 2048, 2)]:
    for i in range(n):
        x = block(stage, 'abcdef'[i], x, mid, outc, stride if i == 0 else 1, i == 0)
emit(f'layer {{ name: "pool5" type: "Pooling" bottom: "{x}" top: "pool5"\n'
     '  pooling_param { kernel_size: 7 stride: 1 pool: AVE } }')
emit('layer { name: "fc1000" type: "InnerProduct" bottom: "pool5" top: "fc1000"\n'
     '  inner_product_param { num_output: 1000 } }')
emit('layer { name: "prob" type: "Softmax" bottom: "fc1000" top: "prob" }')
print('\n'.join(out))
